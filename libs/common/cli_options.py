"""What every ``beamflow`` sub-command shares: the --config and --nats options, loading, finding the bus.

Sub-command groups (``dlq``, ``status``, ``hold`` ...) live in their own ``cli_<group>.py`` modules and
import from here, so an option is spelled and documented once.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from beamflow.common.config import BeamflowConfig, load_config
from beamflow.common.errors import ConfigError, NatsUnavailable
from nats.js import JetStreamContext
from rich.console import Console

#: Messages for the operator (progress, errors) go to stderr; results go to stdout.
console = Console(stderr=True)
#: Results (tables, reports) on stdout, wide enough for a pipe or a log file.
out = Console(width=None if sys.stdout.isatty() else 200)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (YAML). Default: config/demo.yaml.",
        envvar="BEAMFLOW_CONFIG",
    ),
]
NatsOption = Annotated[
    str | None,
    typer.Option(
        "--nats",
        help="Use this NATS server (nats://host:port) instead of the embedded one.",
        envvar="BEAMFLOW_NATS_URL",
    ),
]


def load_or_exit(path: Path) -> BeamflowConfig:
    """The validated config, or every problem printed and exit code 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        console.print(f"[red]{path}: configuration is invalid[/red]")
        for problem in exc.problems:
            console.print(f"  - {problem}")
        raise typer.Exit(2) from None


def bus_url(config: BeamflowConfig, override: str | None) -> str:
    """The NATS server an operator command talks to: --nats, else nats.url, else the embedded one.

    ``beamflow up`` writes its embedded server's URL into the state folder (the port may be any free one),
    so operator commands on the same machine with the same config find it without being told.
    """
    from beamflow.common.bus_auth import client_auth

    if override:
        url = override
    elif config.nats.url:
        url = config.nats.url
    else:
        try:
            url = config.embedded_url_file.read_text().strip()
        except OSError:
            url = f"nats://127.0.0.1:{config.nats.port or 4222}"
    # The credentials go with the URL to operator_bus, never into it: a URL gets printed.
    _auth_for[url] = client_auth(config, operator=True)
    return url


#: How an operator command authenticates to each server ``bus_url`` chose (the embedded one: its operator).
_auth_for: dict[str, dict[str, Any]] = {}


@contextlib.asynccontextmanager
async def operator_bus(url: str, timeout: float = 5.0) -> AsyncIterator[JetStreamContext]:
    """JetStream for a one-shot operator command: fail fast with a clear message when nobody answers.

    Services reconnect forever; a person at a terminal wants to hear within seconds that the server is not
    there, and how to point the command at the right one.
    """
    import nats
    from beamflow.common.bus import server_urls

    async def quiet(exc: Exception) -> None:
        pass  # the one error that matters is raised below; nats-py would print each attempt's traceback

    try:
        nc = await nats.connect(
            server_urls(url),
            connect_timeout=timeout,
            max_reconnect_attempts=1,  # 0 would mean "retry the initial connect for a minute"
            reconnect_time_wait=0.1,
            allow_reconnect=False,
            error_cb=quiet,
            name="beamflow-cli",
            **_auth_for.get(url, {}),
        )
    except Exception as exc:
        raise NatsUnavailable(
            f"cannot reach NATS at {url} ({type(exc).__name__}); is `beamflow up` running? "
            "Point at another server with --nats URL or nats.url in the config"
        ) from exc
    try:
        yield nc.jetstream(timeout=timeout)
    finally:
        await nc.close()
