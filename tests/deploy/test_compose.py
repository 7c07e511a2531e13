"""The Compose deployment, checked as files: Docker is not available where the tests run, so nothing here
starts a container. compose.yaml is parsed (its YAML merge keys resolved as Compose resolves them) and
compared with the code: every registered service, its config, Prometheus' targets and the Grafana
dashboard's queries."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from beamflow.common.config import BeamflowConfig, load_config
from beamflow.common.endpoints import FilesystemEndpoint, TarArchiveEndpoint
from tests.deploy.support import (
    COMPOSE_DIR,
    CONFIG_PATH,
    DATA_MOUNT,
    HEALTH_PORT,
    NATS_DIR,
    STATUS_PAGE_PORT,
    build_services,
    exposed_metric_names,
    image_minor,
    image_uid,
    is_secret_name,
    nats_server_floor,
    nats_users_module,
    registered_services,
    secret_variables,
    service_args,
)

#: Interpolation Compose does from the .env file: ${NAME}, ${NAME:-default}, ${NAME:?error}.
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
    return loaded


@pytest.fixture(scope="module")
def config() -> BeamflowConfig:
    return load_config(COMPOSE_DIR / "beamflow.yaml")


def services_of(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each volume in the short syntax (source:target[:mode])."""
    found = {}
    for entry in service.get("volumes") or []:
        source, target = entry.split(":")[:2]
        found[target] = source
    return found


def test_every_registered_service_has_a_locked_down_container(compose: dict[str, Any]) -> None:
    services = services_of(compose)
    uid = image_uid()
    for name in registered_services():
        container = services.get(name)
        assert container is not None, f"no compose service for the registered service {name}"
        assert container["command"] == service_args(name)
        assert container["image"] == "${BEAMFLOW_IMAGE:-beamflow:local}", "every service runs the one image"
        assert (COMPOSE_DIR / container["build"]["context"] / "Dockerfile").is_file()
        assert container["user"] == f"{uid}:{uid}", "the image's fixed UID"
        assert container["read_only"] is True
        assert container["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in container["security_opt"]
        assert any(entry.startswith("/tmp") for entry in container["tmpfs"]), "/tmp is writable"
        volumes = mounts(container)
        assert volumes[f"{CONFIG_PATH}:ro".split(":")[0]] == "./beamflow.yaml"
        assert volumes[DATA_MOUNT] == "beamflow-data", "every service sees the same files"
        environment = container["environment"]
        assert environment["OTEL_TRACES_EXPORTER"] == "otlp"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert environment["BEAMFLOW_NATS_USER"] == name, "its own NATS user (decision 0029)"
        password = nats_users_module().password_variable(name)
        assert environment["BEAMFLOW_NATS_PASSWORD"].startswith("${" + password + ":?")
    # No service runs from the image without being registered.
    running = {c["command"][1] for c in services.values() if (c.get("command") or [None])[0] == "run"}
    assert running == set(registered_services())


def test_the_supporting_containers(compose: dict[str, Any], config: BeamflowConfig) -> None:
    services = services_of(compose)
    nats = services["nats"]
    assert nats["image"].startswith("nats:")
    assert image_minor(nats["image"].split(":", 1)[1]) >= nats_server_floor(), "schedules need 2.12+"
    assert "-js" in nats["command"], "JetStream on"
    assert "js-enabled-only" in " ".join(nats["healthcheck"]["test"]), "healthy only once JetStream is"
    scicat = services["scicat"]
    assert scicat["image"] == services["mover"]["image"], "the local SciCat runs from the one image"
    assert scicat["entrypoint"][-2:] == ["-m", "beamflow.scicat_local"]
    assert scicat["command"][scicat["command"].index("--host") + 1] == "0.0.0.0"
    page = services["status-page"]
    assert page["command"][0] == "status-page" and page["image"] == services["mover"]["image"]
    assert page["command"][page["command"].index("--host") + 1] == "0.0.0.0"
    assert page["command"][page["command"].index("--port") + 1] == str(STATUS_PAGE_PORT)
    assert page["environment"]["BEAMFLOW_HEALTH_PORT"] == str(STATUS_PAGE_PORT), "Docker's health check"
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert {"prometheus", "grafana"} <= set(services)
    # The config's servers are the compose services that run them.
    nats_url = urlparse(config.nats.url or "")
    assert (nats_url.hostname, nats_url.port) == ("nats", 4222)
    catalog = urlparse(config.catalog.url or "")
    assert catalog.hostname == "scicat"
    assert str(catalog.port) == scicat["command"][scicat["command"].index("--port") + 1]


def test_the_config_is_valid_for_containers(compose: dict[str, Any], config: BeamflowConfig) -> None:
    assert config.telemetry.health_host == "0.0.0.0", "Prometheus and health checks come from outside"
    assert config.nats.replicas == 1, "one NATS server"
    writable = [config.state_dir] + [
        e.root for e in config.endpoints.values() if isinstance(e, FilesystemEndpoint | TarArchiveEndpoint)
    ]
    for path in writable:
        assert str(path).startswith(DATA_MOUNT + "/"), f"{path} is not on the beamflow-data volume"
    services = services_of(compose)
    for name, service in build_services(config).items():
        values, files = secret_variables(config, service)
        for variable in values | files:
            assert variable in services[name]["environment"], f"{name} needs {variable}"


def test_prometheus_scrapes_every_service(compose: dict[str, Any]) -> None:
    prometheus = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target: config.get("metrics_path", "/metrics")
        for config in prometheus["scrape_configs"]
        for static in config["static_configs"]
        for target in static["targets"]
    }
    for name in registered_services():
        assert targets.get(f"{name}:{HEALTH_PORT}") == "/metrics", f"Prometheus does not scrape {name}"
    assert mounts(services_of(compose)["prometheus"])["/etc/prometheus/prometheus.yml"] == (
        "./prometheus/prometheus.yml"
    )


def test_grafana_dashboard_queries_metrics_the_services_serve(compose: dict[str, Any]) -> None:
    grafana = services_of(compose)["grafana"]
    volumes = mounts(grafana)
    provisioning = COMPOSE_DIR / volumes["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())["datasources"]
    uids = {source["uid"]: source for source in sources}
    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"]
    (folder,) = [p["options"]["path"] for p in providers]
    dashboards = COMPOSE_DIR / volumes[folder]
    dashboard = json.loads((dashboards / "beamflow.json").read_text())

    exposed = exposed_metric_names()
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids are unique"
    queried = set()
    for panel in panels:
        assert uids[panel["datasource"]["uid"]]["type"] == "prometheus", panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bbeamflow_[a-z_]+", target["expr"]))
            assert names, f"{panel['title']}: {target['expr']}"
            missing = names - exposed
            assert not missing, f"{panel['title']} queries {sorted(missing)}, which no service serves"
            queried |= names
    titles = " | ".join(panel["title"].lower() for panel in panels)
    for topic in ("throughput", "latency", "failures", "lag", "pruning", "moved"):
        assert topic in titles, f"no panel about {topic}"
    exprs = " ".join(t["expr"] for panel in panels for t in panel["targets"])
    assert 'beamflow_messages_total{service="mover",stage="new",outcome="ok"}' in exprs, "throughput"
    assert 'outcome="dead_lettered"' in exprs, "failures"
    assert {
        "beamflow_messages_total",
        "beamflow_handler_duration_seconds_bucket",
        "beamflow_consumer_pending",
        "beamflow_pruned_bytes_total",
        "beamflow_moved_bytes_total",
    } <= queried


def test_secrets_stay_out_of_git(compose: dict[str, Any]) -> None:
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    ignored = (COMPOSE_DIR / ".gitignore").read_text().split()
    assert ".env" in ignored
    lines = (COMPOSE_DIR / ".env.example").read_text().splitlines()
    example = dict(line.split("=", 1) for line in lines if re.match(r"^\w+=", line))
    for variable in set(VARIABLE.findall(text)):
        assert variable in example, f".env.example does not mention {variable}"
    for variable, value in example.items():
        if is_secret_name(variable):
            assert value == "", f".env.example must not hold a value for {variable}"
    for name, service in services_of(compose).items():
        for variable, value in (service.get("environment") or {}).items():
            if is_secret_name(variable):
                assert VARIABLE.fullmatch(str(value)), f"{name}: {variable} is written in compose.yaml"


def test_nats_gets_every_password_its_users_need(compose: dict[str, Any]) -> None:
    nats = services_of(compose)["nats"]
    volumes = mounts(nats)
    (config_path,) = [nats["command"][i + 1] for i, arg in enumerate(nats["command"]) if arg == "-c"]
    assert (COMPOSE_DIR / volumes[config_path]).resolve() == (NATS_DIR / "auth.conf").resolve()
    needed = set(re.findall(r"\$(BEAMFLOW_NATS_PASSWORD_\w+)", (NATS_DIR / "auth.conf").read_text()))
    given = set(nats["environment"])
    assert needed == given, f"missing {sorted(needed - given)}, unused {sorted(given - needed)}"
    for variable, value in nats["environment"].items():
        assert value.startswith("${" + variable + ":?"), "the server's password is the one its client gets"
