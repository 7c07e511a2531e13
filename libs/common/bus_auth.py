"""Who may do what on the bus: a NATS user per service, allowed to publish only the events it declares.

A service's user may publish the subjects of the events its handlers declare (``Handler.publishes``) and
emits itself (``Service.emits``), the dead letters, the KV buckets it writes (``Service.kv_writes``), its
acks, and JetStream's API (which it needs to make its consumers and fetch from them), but not the API's
destructive calls (deleting or purging streams, consumers or messages): the operator's user does those. It
may subscribe only to its own inboxes. So a mover cannot publish ``scan.ingested``, and a compromised
ingestor cannot purge the dead letters.

How a process authenticates (``client_auth``), first found wins:

1. the config's ``nats`` section: a ``.creds`` file, an nkey seed, or a user and password (secrets from the
   environment or files it names), and TLS files;
2. ``BEAMFLOW_NATS_USER``/``BEAMFLOW_NATS_PASSWORD`` in the environment: how ``beamflow up`` hands each
   service process its own user;
3. for operator commands on the machine running the embedded server: its operator user, from the users file
   it generated in the state folder (mode 0600).

The embedded default generates everything itself (``EmbeddedUsers``): a random password per service and for
the operator, kept in ``<state>/nats/users.json``, and the server's ``authorization`` block from them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from beamflow.common.config import BeamflowConfig, NatsConfig
from beamflow.common.events import ScanFailed
from beamflow.common.service import Service

USER_ENV: Final = "BEAMFLOW_NATS_USER"
PASSWORD_ENV: Final = "BEAMFLOW_NATS_PASSWORD"
OPERATOR: Final = "operator"

#: JetStream API calls only the operator makes: nothing a service does needs to destroy stored data.
DESTRUCTIVE_API: Final = (
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.CONSUMER.DELETE.>",
)


def service_permissions(service: Service) -> dict[str, Any]:
    """The nats-server ``permissions`` block of one service's user."""
    events = {event for handler in service.handlers for event in handler.publishes} | set(service.emits)
    allow = sorted({event.subject_filter() for event in events} | {ScanFailed.subject_filter()})
    allow += [f"$KV.{bucket}.>" for bucket in sorted(service.kv_writes)]
    allow += ["$JS.API.>", "$JS.ACK.>"]
    return {
        "publish": {"allow": allow, "deny": list(DESTRUCTIVE_API)},
        "subscribe": {"allow": ["_INBOX.>"]},
    }


def _users_path(config: BeamflowConfig) -> Path:
    return Path(config.nats.data_dir) / "users.json"


class EmbeddedUsers:
    """The embedded server's users: one per service and the operator, passwords generated once and kept."""

    def __init__(self, config: BeamflowConfig, services: Mapping[str, Service]) -> None:
        self.path = _users_path(config)
        self.services = dict(services)
        self.passwords = self._load_or_create(sorted([*self.services, OPERATOR]))

    def _load_or_create(self, names: Iterable[str]) -> dict[str, str]:
        known: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError):  # none yet, or unreadable: made anew
            known = json.loads(self.path.read_text())
        wanted = {name: known.get(name) or secrets.token_urlsafe(24) for name in names}
        if wanted != known:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(wanted, handle)
        return wanted

    def server_config(self) -> str:
        """nats-server's ``authorization`` block (JSON is valid nats-server config syntax)."""
        users: list[dict[str, Any]] = [{"user": OPERATOR, "password": self.passwords[OPERATOR]}]
        for name, service in sorted(self.services.items()):
            users.append({"user": name, "password": self.passwords[name], "permissions": service_permissions(service)})
        return "authorization: " + json.dumps({"users": users}, indent=2) + "\n"

    def env_for(self, name: str) -> dict[str, str]:
        """The environment that makes a ``beamflow run NAME`` process connect as its own user."""
        return {USER_ENV: name, PASSWORD_ENV: self.passwords[name]}

    def operator(self) -> dict[str, Any]:
        return {"user": OPERATOR, "password": self.passwords[OPERATOR]}


def _tls_context(settings: NatsConfig) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    return context


def client_auth(config: BeamflowConfig, *, operator: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``: how this process proves who it is (see the module's list)."""
    settings = config.nats
    options: dict[str, Any] = {}
    context = _tls_context(settings)
    if context is not None:
        options["tls"] = context
    if settings.credentials_file is not None:
        return {**options, "user_credentials": str(settings.credentials_file)}
    if settings.nkey_seed is not None:
        return {**options, "nkeys_seed_str": settings.nkey_seed.resolve().get_secret_value()}
    if settings.user is not None:
        password = settings.password.resolve().get_secret_value() if settings.password else None
        return {**options, "user": settings.user.resolve().get_secret_value(), "password": password}
    if os.environ.get(USER_ENV):
        return {**options, "user": os.environ[USER_ENV], "password": os.environ.get(PASSWORD_ENV)}
    if operator and not settings.url:
        try:
            passwords = json.loads(_users_path(config).read_text())
        except (OSError, ValueError):
            return options
        if OPERATOR in passwords:
            return {**options, "user": OPERATOR, "password": passwords[OPERATOR]}
    return options
