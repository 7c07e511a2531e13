"""Operator commands of the analyzer: ``beamflow job ls`` and ``beamflow job cancel SCAN``. Registered
through the ``beamflow.commands`` entry point, so the core CLI never imports the analyzer.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from beamflow.analyzer.registry import JobEntry, JobRegistry
from beamflow.common.cli_options import (
    DEFAULT_CONFIG,
    ConfigOption,
    NatsOption,
    bus_url,
    console,
    load_or_exit,
    operator_bus,
    out,
)
from beamflow.common.errors import BeamflowError
from rich.table import Table

job_app = typer.Typer(help="Analysis jobs: what runs now, and cancelling one.", no_args_is_help=True)


async def _registry_call(url: str, scan: str | None) -> list[JobEntry]:
    async with operator_bus(url) as js:
        registry = await JobRegistry.open(js)
        return await (registry.request_cancel(scan) if scan is not None else registry.all())


@job_app.command("ls")
def list_jobs(config: ConfigOption = DEFAULT_CONFIG, nats_url: NatsOption = None) -> None:
    """Every analysis job the analyzer knows: running ones, and how the last ones ended."""
    loaded = load_or_exit(config)
    try:
        entries = asyncio.run(_registry_call(bus_url(loaded, nats_url), None))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = Table()
    for column in ("scan", "analysis", "site", "job", "state", "updated"):
        table.add_column(column)
    for e in entries:
        state = (e.end or e.state) if e.state == "ended" else e.state.replace("_", " ")
        if e.cancel_requested and e.state != "ended":
            state += " (cancel asked)"
        table.add_row(e.scan_id, e.analysis, e.site, e.job_id or "-", state, e.updated_at.isoformat(timespec="seconds"))
    out.print(table)


@job_app.command("cancel")
def cancel(
    scan: Annotated[str, typer.Argument(help="The scan whose running analysis job to cancel.")],
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Cancel the scan's running analysis job: the analyzer stops it at its site on its next poll, and the
    step becomes a dead letter (replay it to run the analysis again)."""
    loaded = load_or_exit(config)
    try:
        marked = asyncio.run(_registry_call(bus_url(loaded, nats_url), scan))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if not marked:
        console.print(f"[yellow]no running analysis job for scan {scan}; `beamflow job ls` lists them[/yellow]")
        raise typer.Exit(1)
    for entry in marked:
        out.print(f"cancel requested for {entry.analysis} job {entry.job_id or '(not yet submitted)'} at {entry.site}")


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")
