"""Operator command of the flight check: ``beamflow flight-check BL [--wait]`` runs one now (registered through
the ``beamflow.commands`` entry point, so the core CLI never imports this service)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from beamflow.common import subjects
from beamflow.common.bus import publish_event
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
from beamflow.common.events import FlightChecked, FlightRequested
from nats.js.api import DeliverPolicy


async def _run(url: str, beamline: str, wait: float | None) -> FlightChecked | None:
    async with operator_bus(url) as js:
        subscription = None
        if wait is not None:
            subscription = await js.subscribe(
                subjects.flight_subject("result", beamline), ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
        await publish_event(js, FlightRequested(beamline=beamline, requested_by="operator"), url)
        if subscription is None:
            return None
        try:
            message = await subscription.next_msg(timeout=wait)
        except TimeoutError:
            raise BeamflowError(
                f"no flight check result for {beamline} within {wait:.0f} s: is the flightcheck service running?"
            ) from None
        return FlightChecked.model_validate_json(message.data)


def flight_check(
    beamline: Annotated[str, typer.Argument(help="The beamline whose flight check to run now.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result and exit 1 if the check failed.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Send a small test scan through the beamline's whole pipeline now (as the schedule does), and report."""
    loaded = load_or_exit(config)
    settings = loaded.beamlines.get(beamline)
    if settings is None or settings.flight_check is None:
        console.print(f"[red]beamline {beamline!r} has no flight_check in this configuration[/red]")
        raise typer.Exit(2)
    limit = settings.flight_check.timeout.total_seconds() + 60 if wait else None
    try:
        result = asyncio.run(_run(bus_url(loaded, nats_url), beamline, limit))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if result is None:
        out.print(
            f"flight check of {beamline} requested; its result goes to {subjects.flight_subject('result', beamline)}"
        )
        return
    verdict = "passed" if result.ok else "[red]FAILED[/red]"
    out.print(f"flight check of {beamline} {verdict} in {result.seconds:.1f} s (scan {result.scan_id})")
    out.print(f"verified copies at: {', '.join(result.verified) or 'none'}; cleaned: {', '.join(result.cleaned)}")
    for problem in result.problems:
        out.print(f"  - {problem}")
    if not result.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("flight-check")(flight_check)
