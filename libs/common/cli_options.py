"""What every ``beamflow`` sub-command shares: the --config and --nats options, loading, finding the bus.

Sub-command groups (``dlq``, ``status``, ``hold`` ...) live in their own ``cli_<group>.py`` modules and
import from here, so an option is spelled and documented once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from beamflow.common.config import BeamflowConfig, load_config
from beamflow.common.errors import ConfigError
from rich.console import Console

#: Messages for the operator (progress, errors) go to stderr; results go to stdout.
console = Console(stderr=True)

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
    """The NATS server an operator command talks to: --nats, else nats.url, else the embedded server's port.

    ``beamflow up`` starts the embedded server on ``nats.port`` (4222 unless configured), so operator
    commands on the same machine find it without being told.
    """
    if override:
        return override
    if config.nats.url:
        return config.nats.url
    return f"nats://127.0.0.1:{config.nats.port}"
