"""The Kubernetes manifests: every overlay renders with ``kubectl kustomize``, validates offline against the
Kubernetes JSON schemas, and holds what the code and the security rules require.

Rendering uses whatever kubectl is on PATH; without one, Debian's ``kubernetes-client`` is installed with
apt-get (its kubectl 1.20 embeds kustomize v2.0.3, which is why the kustomizations use only what that old
version renders). Kubernetes objects are validated with the ``kubernetes-validate`` package's strict schemas
(unknown fields are errors) for the oldest and newest Kubernetes versions below. KEDA's ScaledObject is a
custom resource with no schema there: it is validated against ``SCALED_OBJECT_SCHEMA`` below, written for the
fields these manifests use, and its triggers are then compared with the consumers the code creates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import FilesystemEndpoint, TarArchiveEndpoint
from tests.deploy.support import (
    CONFIG_PATH,
    DATA_MOUNT,
    HEALTH_PORT,
    K8S,
    NATS_DIR,
    STATUS_PAGE_PORT,
    build_services,
    durable_consumers,
    ensure_kubectl,
    image_minor,
    image_uid,
    is_secret_name,
    kustomize,
    load_config_text,
    nats_server_floor,
    nats_users_module,
    read_yaml_documents,
    registered_services,
    secret_variables,
    service_args,
)

OVERLAYS = ("dev", "production")
NAMESPACE = "beamflow"
#: Kubernetes versions the manifests must be valid for: an old supported one and the newest with schemas.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())
#: Kinds without a namespace.
CLUSTER_SCOPED = {"Namespace"}

#: The subset of KEDA's ScaledObject (keda.sh/v1alpha1) these manifests use, with the nats-jetstream
#: trigger's metadata keys from KEDA's documentation. Unknown fields are errors, as a typo would be.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"const": "Deployment"},
                        "apiVersion": {"const": "apps/v1"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "behavior": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "scaleDown": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "properties": {
                                                "stabilizationWindowSeconds": {
                                                    "type": "integer",
                                                    "minimum": 0,
                                                    "maximum": 3600,
                                                }
                                            },
                                        }
                                    },
                                }
                            },
                        }
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "nats-jetstream"},
                            # KEDA reads trigger metadata as strings: a bare number is rejected.
                            "metadata": {
                                "type": "object",
                                "required": [
                                    "natsServerMonitoringEndpoint",
                                    "account",
                                    "stream",
                                    "consumer",
                                    "lagThreshold",
                                ],
                                "additionalProperties": False,
                                "properties": {
                                    "natsServerMonitoringEndpoint": {"type": "string", "pattern": r"^[a-z0-9.-]+:\d+$"},
                                    "account": {"type": "string", "minLength": 1},
                                    "stream": {"type": "string", "pattern": r"^[A-Z_]+$"},
                                    "consumer": {"type": "string", "minLength": 1},
                                    "lagThreshold": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
                                    "activationLagThreshold": {"type": "string", "pattern": r"^[0-9]+$"},
                                    "useHttps": {"enum": ["true", "false"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    kubectl = ensure_kubectl()
    return {overlay: kustomize(kubectl, K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def nats_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    return values


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    return containers


def beamflow_services(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(service, Deployment, container) of every Deployment that runs ``beamflow run SERVICE``."""
    for deployment in objects(docs, "Deployment").values():
        for container in containers(deployment):
            args = container.get("args") or []
            if args[:1] == ["run"]:
                yield args[1], deployment, container


def rendered_config(docs: list[dict[str, Any]], tmp_path: Path) -> BeamflowConfig:
    """The beamflow.yaml the overlay ships (its generated ConfigMap), loaded as `beamflow run` loads it."""
    (config_map,) = [doc for name, doc in objects(docs, "ConfigMap").items() if name.startswith("beamflow-config")]
    return load_config_text(config_map["data"]["beamflow.yaml"], tmp_path)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env") or []}


def mount_for(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume mount whose folder holds ``path`` (the deepest one)."""
    best = None
    for mount in container.get("volumeMounts") or []:
        folder = mount["mountPath"].rstrip("/")
        if (path == folder or path.startswith(folder + "/")) and (best is None or len(folder) > len(best["mountPath"])):
            best = mount
    return best


def volume(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes") or []}
    return volumes[name]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    kinds = set()
    for doc in rendered[overlay]:
        kinds.add(doc["kind"])
        where = f"{overlay}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["apiVersion"].startswith("keda.sh/"):
            try:
                jsonschema.validate(doc, SCALED_OBJECT_SCHEMA)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} (Kubernetes {version}): {'.'.join(map(str, exc.path))}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{where}: no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']}")
    assert {"Deployment", "PodDisruptionBudget", "NetworkPolicy", "ScaledObject", "ConfigMap"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lives_in_the_beamflow_namespace(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    # Old kustomize drops the namespace of an overlay's generated ConfigMaps unless the overlay repeats it.
    for doc in rendered[overlay]:
        expected = None if doc["kind"] in CLUSTER_SCOPED else NAMESPACE
        assert doc["metadata"].get("namespace") == expected, f"{doc['kind']}/{doc['metadata']['name']}"
    (namespace,) = objects(rendered[overlay], "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_registered_service_has_a_deployment(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    deployments = objects(rendered[overlay], "Deployment")
    for name in registered_services():
        deployment = deployments.get(f"beamflow-{name}")
        assert deployment is not None, f"{overlay}: no Deployment beamflow-{name} for the registered service {name}"
        (container,) = containers(deployment)
        assert container["args"] == service_args(name)
        assert container.get("command") is None, "the image's entrypoint (beamflow) runs the service"
    running = sorted(name for name, _, _ in beamflow_services(rendered[overlay]))
    assert running == sorted(registered_services()), "a Deployment runs a service that is not installed"
    page = deployments["beamflow-status-page"]
    (container,) = containers(page)
    assert container["args"][0] == "status-page"
    assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
    assert container["args"][container["args"].index("--port") + 1] == str(STATUS_PAGE_PORT)
    service = objects(rendered[overlay], "Service")["beamflow-status-page"]
    assert service["spec"]["selector"].items() <= page["spec"]["template"]["metadata"]["labels"].items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_locked_down(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    uid = image_uid()
    for name, deployment in objects(rendered[overlay], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        pod_security = pod["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] == uid, f"{name}: the image's fixed UID"
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), name
        for v in pod.get("volumes") or []:
            assert "hostPath" not in v, f"{name}: hostPath volume {v['name']}"
        for container in containers(deployment):
            where = f"{overlay}: {name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert not security.get("privileged"), where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{where}: {bound}"
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"].startswith("/"), f"{where}: {probe}"
            tmp = mount_for(container, "/tmp")
            assert tmp is not None and tmp["mountPath"] == "/tmp", f"{where}: /tmp is writable"
            assert "emptyDir" in volume(deployment, tmp["name"]), f"{where}: /tmp is an emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_probe_and_expose_their_health_port(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for name, deployment, container in beamflow_services(rendered[overlay]):
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"health": HEALTH_PORT}, name

        def port_of(probe: dict[str, Any], ports: dict[str, int] = ports) -> int:
            port = probe["httpGet"]["port"]
            return ports[port] if isinstance(port, str) else int(port)

        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert port_of(container["livenessProbe"]) == port_of(container["readinessProbe"]) == HEALTH_PORT, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(HEALTH_PORT), name
        assert annotations["prometheus.io/path"] == "/metrics", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_written_into_the_manifests(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = rendered[overlay]
    assert not objects(docs, "Secret"), "Secrets are created by hand in the cluster, never rendered from git"
    for name, config_map in objects(docs, "ConfigMap").items():
        for key in config_map.get("data") or {}:
            assert not is_secret_name(key), f"ConfigMap {name} holds {key}"
    for name, deployment in objects(docs, "Deployment").items():
        for container in containers(deployment):
            for variable, item in env_of(container).items():
                where = f"{overlay}: {name}: {variable}"
                if is_secret_name(variable):
                    assert "value" not in item, f"{where} is written in plain text"
                    assert "secretKeyRef" in item["valueFrom"], f"{where} comes from a Secret"
                if variable.endswith("_FILE") and "value" in item:
                    mount = mount_for(container, item["value"])
                    assert mount is not None, f"{where}: {item['value']} is on no volume"
                    assert "secret" in volume(deployment, mount["name"]), f"{where}: the file is from a Secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_get_the_secrets_and_the_nats_user_their_config_needs(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, tmp_path: Path
) -> None:
    config = rendered_config(rendered[overlay], tmp_path)
    services = build_services(config)
    for name, deployment, container in beamflow_services(rendered[overlay]):
        env = env_of(container)
        values, files = secret_variables(config, services[name])
        for variable in values:
            assert "secretKeyRef" in env.get(variable, {}).get("valueFrom", {}), f"{overlay}: {name} needs {variable}"
        for variable in files:
            path = env[variable]["value"]
            mount = mount_for(container, path)
            assert mount is not None and "secret" in volume(deployment, mount["name"]), f"{name}: {variable}"
        # Its own NATS user (decision 0029), the password from the Secret the NATS server reads too.
        assert env["BEAMFLOW_NATS_USER"]["value"] == name
        password = env["BEAMFLOW_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert (password["name"], password["key"]) == ("beamflow-nats-users", name)
        assert not password.get("optional"), "without its password a service would connect as nobody"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_config_fits_the_containers(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, nats_values: dict[str, Any], tmp_path: Path
) -> None:
    config = rendered_config(rendered[overlay], tmp_path)
    assert config.telemetry.health_host == "0.0.0.0", "probes and Prometheus come from outside the pod"
    assert config.nats.url == "nats://nats.nats.svc.cluster.local:4222"
    servers = nats_values["config"]["cluster"]["replicas"] if overlay == "production" else 1
    assert config.nats.replicas == servers, "stream replicas match the NATS servers of the overlay's Helm values"
    writable = [config.state_dir] + [
        endpoint.root
        for endpoint in config.endpoints.values()
        if isinstance(endpoint, FilesystemEndpoint | TarArchiveEndpoint)
    ]
    for path in writable:
        assert str(path).startswith(DATA_MOUNT + "/"), f"{path} is not on the data volume"
    for name, deployment, container in beamflow_services(rendered[overlay]):
        config_mount = mount_for(container, CONFIG_PATH)
        assert config_mount is not None and config_mount.get("readOnly"), name
        assert volume(deployment, config_mount["name"])["configMap"]["name"].startswith("beamflow-config-"), name
        data = mount_for(container, DATA_MOUNT)
        if data is not None:
            assert "persistentVolumeClaim" in volume(deployment, data["name"]), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_consuming_service_scales_on_its_real_consumers(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, nats_values: dict[str, Any], tmp_path: Path
) -> None:
    docs = rendered[overlay]
    config = rendered_config(docs, tmp_path)
    scaled = objects(docs, "ScaledObject")
    deployments = objects(docs, "Deployment")
    monitor = f"nats-headless.nats.svc.cluster.local:{nats_values['config']['monitor']['port']}"
    for name, service in build_services(config).items():
        consumers = durable_consumers(service, config)
        scaled_object = scaled.get(f"beamflow-{name}")
        if not consumers:
            assert scaled_object is None, f"{name} consumes nothing; there is no lag to scale on"
            assert deployments[f"beamflow-{name}"]["spec"]["replicas"] == 1
            continue
        assert scaled_object is not None, f"{overlay}: {name} consumes {sorted(consumers)} but has no ScaledObject"
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == f"beamflow-{name}"
        triggers = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in spec["triggers"]}
        assert triggers == consumers, f"{name}: triggers must name exactly the durable consumers the runtime makes"
        for trigger in spec["triggers"]:
            assert trigger["metadata"]["natsServerMonitoringEndpoint"] == monitor
            assert trigger["metadata"]["account"] == "$G", "the NATS users belong to the global account"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert "replicas" not in deployments[f"beamflow-{name}"]["spec"], "KEDA's HPA owns the replica count"
    assert set(scaled) <= set(deployments)


def test_dev_runs_one_replica_of_everything_on_one_node(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["dev"]
    for name, scaled_object in objects(docs, "ScaledObject").items():
        assert scaled_object["spec"]["maxReplicaCount"] == 1, name
    for name, deployment in objects(docs, "Deployment").items():
        assert deployment["spec"].get("replicas", 1) == 1, name
        for container in containers(deployment):
            memory = container["resources"]["requests"]["memory"]
            assert re.fullmatch(r"\d+Mi", memory) and int(memory[:-2]) <= 128, f"{name}: small requests"
    (claim,) = objects(docs, "PersistentVolumeClaim").values()
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], "single-node storage"


def test_production_keeps_two_replicas_on_the_data_path(rendered: dict[str, list[dict[str, Any]]]) -> None:
    scaled = objects(rendered["production"], "ScaledObject")
    for name in ("mover", "ledger", "pruner", "ingestor", "analyzer"):
        assert scaled[f"beamflow-{name}"]["spec"]["minReplicaCount"] >= 2, name
    env = objects(rendered["production"], "ConfigMap")
    (shared,) = [doc["data"] for key, doc in env.items() if key.startswith("beamflow-env-")]
    assert shared["OTEL_TRACES_EXPORTER"] == "otlp" and shared["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    budgets = list(objects(rendered[overlay], "PodDisruptionBudget").values())
    for name, deployment in objects(rendered[overlay], "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(covering) == 1, f"{overlay}: {name} is covered by {len(covering)} PodDisruptionBudgets"
        assert covering[0]["spec"].get("maxUnavailable") == 1, f"{name}: drains must not be blocked"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    policies = objects(rendered[overlay], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress"), "the default denies everything"

    def ports(rules: list[dict[str, Any]]) -> set[int]:
        return {port["port"] for rule in rules for port in rule.get("ports") or []}

    egress = [rule for policy in policies.values() for rule in policy["spec"].get("egress") or []]
    ingress = [rule for policy in policies.values() for rule in policy["spec"].get("ingress") or []]
    assert 4222 in ports(egress), "services reach NATS"
    assert 53 in ports(egress), "pods resolve names"
    assert HEALTH_PORT in ports(ingress), "Prometheus scrapes the health port"
    assert STATUS_PAGE_PORT in ports(ingress), "operators reach the status page"
    nats = policies["allow-nats"]["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"]
    assert nats == {"kubernetes.io/metadata.name": "nats"}


def test_nats_helm_values_make_a_jetstream_cluster_keda_can_read(nats_values: dict[str, Any]) -> None:
    config = nats_values["config"]
    assert config["cluster"]["enabled"] is True and config["cluster"]["replicas"] == 3
    store = config["jetstream"]["fileStore"]
    assert config["jetstream"]["enabled"] is True and store["enabled"] is True and store["pvc"]["enabled"] is True
    assert config["monitor"]["enabled"] is True and config["monitor"]["port"] == 8222
    assert image_minor(nats_values["container"]["image"]["tag"]) >= nats_server_floor(), "schedules need 2.12+"
    dev = yaml.safe_load((K8S / "nats" / "values-dev.yaml").read_text())
    assert dev["config"]["cluster"]["enabled"] is False, "one server on one node"
    for doc in read_yaml_documents(K8S / "nats" / "networkpolicy.yaml"):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def test_nats_helm_values_carry_the_generated_users(nats_values: dict[str, Any]) -> None:
    users = nats_users_module()
    text = (NATS_DIR / "auth.conf").read_text()
    assert users.embedded_in_helm_values((K8S / "nats" / "values.yaml").read_text()) == text
    assert text in nats_values["configMap"]["merge"]["data"]["auth.conf"]
    assert nats_values["config"]["merge"]["$include"] == "auth.conf"
    env = nats_values["container"]["env"]
    for variable in set(re.findall(r"\$(BEAMFLOW_NATS_PASSWORD_\w+)", text)):
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "beamflow-nats-users", variable
        assert users.password_variable(reference["key"]) == variable
