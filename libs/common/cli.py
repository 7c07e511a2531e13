"""The ``beamflow`` command: run the whole system on one machine, run one service, try it, check a config.

beamflow up       embedded NATS + every installed service, until Ctrl-C
beamflow run X    one service (production: one process per service, per pod)
beamflow demo     `up`, plus simulated 7.3.3 and 8.3.2 scans, live progress and a summary
beamflow check    validate a configuration file and print every problem
"""

from __future__ import annotations

import asyncio
import os
import signal
import warnings
from pathlib import Path
from typing import Annotated

import typer
from beamflow.common.cli_dlq import dlq_app
from beamflow.common.cli_options import DEFAULT_CONFIG, ConfigOption, NatsOption, console, load_or_exit
from beamflow.common.cli_retention import hold_app, prune
from beamflow.common.cli_status import status
from beamflow.common.config import environment_problems, load_config
from beamflow.common.errors import BeamflowError, ConfigError

app = typer.Typer(
    name="beamflow",
    help="Data orchestration for synchrotron beamlines: detector folders to verified copies, over NATS JetStream.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="The configuration file to validate.")],
    environment: Annotated[
        bool,
        typer.Option("--environment", "-e", help="Also check this machine: roots exist, secrets are set."),
    ] = False,
    credentials: Annotated[
        bool,
        typer.Option(
            "--credentials", help="Also log in to every Globus, NERSC and SciCat account it names, and say what to do."
        ),
    ] = False,
) -> None:
    """Validate a configuration; print every problem with the field that holds it; exit 1 if any."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"{config}: {problem}")
        typer.echo(f"{len(exc.problems)} problem(s) found")
        raise typer.Exit(1) from None
    problems = environment_problems(loaded) if environment else []
    for problem in problems:
        typer.echo(f"{config}: {problem}")
    if credentials:
        from beamflow.common.credentials import check_credentials

        reports = asyncio.run(check_credentials(loaded))
        for report in reports:
            typer.echo(f"{config}: {report.account}: {'ok' if report.ok else 'FAILED'}: {report.detail}")
        if not reports:
            typer.echo(f"{config}: no remote accounts to check (no Globus, NERSC or remote SciCat)")
        problems += [r.account for r in reports if not r.ok]
    if problems:
        typer.echo(f"{len(problems)} problem(s) found")
        raise typer.Exit(1)
    beamlines = ", ".join(loaded.beamlines) or "none"
    typer.echo(f"{config}: ok ({len(loaded.endpoints)} endpoints; beamlines: {beamlines})")


@app.command()
def run(
    service: Annotated[str, typer.Argument(help="Name of an installed service (see `beamflow up --help`).")],
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
    health_port: Annotated[int | None, typer.Option(help="Serve /healthz and /readyz on this port.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run one service until SIGTERM (it finishes in-flight work first)."""
    from beamflow.common.logs import configure_logging
    from beamflow.common.metrics import configure_metrics
    from beamflow.common.runtime import Runtime
    from beamflow.common.service import discover
    from beamflow.common.telemetry import configure_tracing

    factories = discover()
    if service not in factories:
        console.print(f"[red]no service named {service!r}; installed: {', '.join(factories) or 'none'}[/red]")
        raise typer.Exit(2)
    loaded = load_or_exit(config)
    url = nats_url or loaded.nats.url
    if not url:
        console.print(
            "[red]no NATS server: pass --nats URL or set nats.url in the config "
            "(`beamflow up` starts an embedded server and its services for you)[/red]"
        )
        raise typer.Exit(2)
    configure_logging(service, log_level)
    configure_tracing(service, loaded.telemetry.service_namespace)
    configure_metrics(service)
    runtime = Runtime(factories[service](loaded), loaded, url, health_port=health_port)

    async def main() -> None:
        _install_signal_handlers(runtime.stopping)
        await runtime.run()

    asyncio.run(main())


@app.command()
def up(
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
    services: Annotated[str | None, typer.Option(help="Comma-separated services to start (default: all).")] = None,
) -> None:
    """Start the embedded NATS server (unless --nats), every installed service and the status page, until Ctrl-C."""
    from beamflow.common.local_catalog import local_catalog
    from beamflow.common.service import discover
    from beamflow.common.stack import LOCAL_CATALOG, STATUS_PAGE, Stack

    loaded = load_or_exit(config)
    names = services.split(",") if services else list(discover())

    async def main() -> None:
        stop = asyncio.Event()
        _install_signal_handlers(stop)
        stack = Stack(loaded, config.resolve(), names, nats_url)
        await stack.start()
        try:
            await stack.wait_ready()
            console.print(f"[green]beamflow is up[/green]: NATS at {stack.url}")
            for proc in stack.processes.values():
                console.print(
                    f"  {proc.name:<10} pid {proc.pid:<8} health http://127.0.0.1:{proc.health_port}{proc.ready_path}"
                    f"  log {proc.log_path}"
                )
            if LOCAL_CATALOG in stack.processes:
                console.print(f"local SciCat at {local_catalog(loaded).url()} (catalog.url unset)")
            if STATUS_PAGE in stack.processes:
                console.print(f"status page at http://127.0.0.1:{stack.processes[STATUS_PAGE].health_port}/")
            console.print("Ctrl-C stops every service (in-flight work finishes first).")
            await stop.wait()
        finally:
            await stack.stop()

    asyncio.run(main())


@app.command()
def demo(
    config: ConfigOption = DEFAULT_CONFIG,
    scans: Annotated[int, typer.Option(help="Scans to simulate per beamline.")] = 10,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Where the demo's folders go (default: a new folder under .beamflow/demo-runs)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every copy.")] = 120.0,
) -> None:
    """Run beamflow on the embedded default and drive simulated 7.3.3 and 8.3.2 scans through it."""
    from beamflow.common.demo import run_demo

    try:
        ok = asyncio.run(run_demo(config.resolve(), scans, workdir, timeout, console))
    except BeamflowError as exc:
        console.print(f"[red]demo failed: {exc}[/red]")
        raise typer.Exit(1) from None
    raise typer.Exit(0 if ok else 1)


app.command()(status)
app.command()(prune)
app.add_typer(hold_app, name="hold")
app.add_typer(dlq_app, name="dlq", help="Dead letters: list, show, replay after fixing the cause, purge.")


#: Installed packages add operator commands here (``register(app)``), as services register in
#: ``beamflow.services``: the archiver's ``archive`` and ``restore`` live with the archiver.
COMMANDS_GROUP = "beamflow.commands"


def _add_installed_commands() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMANDS_GROUP):
        ep.load()(app)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # sfapi-client's authlib warns about its own httpx integration on import: noise for an operator.
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    _add_installed_commands()
    app()


if __name__ == "__main__":
    main()
