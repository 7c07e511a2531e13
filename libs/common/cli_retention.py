"""``beamflow prune --dry-run`` and ``beamflow hold extend|release``: what retention will delete, and changing it.

Deletion itself is only ever done by the pruner service when a hold expires; these commands look ahead
(applying the same safety rule as the pruner, minus the expiry) and move holds in time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from beamflow.common import holds, subjects
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
from beamflow.common.cli_status import when
from beamflow.common.config import BeamflowConfig
from beamflow.common.durations import parse_duration
from beamflow.common.errors import BeamflowError, ScanNotFound
from beamflow.common.events import RetentionHold, utcnow
from beamflow.common.ledger import Ledger
from beamflow.common.safety import evaluate
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.progress import Progress
from rich.table import Table

EndpointOption = Annotated[str | None, typer.Option("--endpoint", "-e", help="Which endpoint's hold (if several).")]

hold_app = typer.Typer(
    help="Change retention holds: extend one, or release it so the pruner may act now.", no_args_is_help=True
)


async def stored_holds(js: JetStreamContext, kind: str) -> list[RetentionHold]:
    """The latest hold message on every ``hold.<kind>.>`` subject in the HOLDS stream."""
    info = await js.stream_info(subjects.HOLDS_STREAM, subjects_filter=subjects.hold_filter(kind))
    expected = len(info.state.subjects or {})
    if expected == 0:
        return []
    sub = await js.subscribe(
        subjects.hold_filter(kind),
        stream=subjects.HOLDS_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT),
    )
    found: list[RetentionHold] = []
    try:
        while len(found) < expected:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except TimeoutError:
                break  # a schedule fired meanwhile: one fewer to read
            found.append(RetentionHold.model_validate_json(msg.data))
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return found


def prune(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what retention would delete and whether it is safe today.")
    ] = False,
    beamline: Annotated[str | None, typer.Option("--beamline", "-b", help="Only this beamline.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows (soonest due first).")] = 50,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """What the pruner would delete, when, and whether the safety rule would pass today (--dry-run)."""
    if not dry_run:
        console.print(
            "Only the pruner service deletes, when a hold expires. Use --dry-run to see what it will delete, "
            "or `beamflow hold release SCAN` to make a hold due now."
        )
        raise typer.Exit(2)
    loaded = load_or_exit(config)
    try:
        rows = asyncio.run(_dry_run(loaded, bus_url(loaded, nats_url), beamline))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    table = Table(title="retention: what the pruner will delete", title_justify="left")
    for column in ("scan", "endpoint", "files", "bytes", "due", "check copy", "safe today?"):
        table.add_column(column, no_wrap=column in ("scan", "due"))
    for hold, due_text, problems in rows[:limit]:
        table.add_row(
            hold.scan_id,
            hold.endpoint,
            str(len(hold.files)),
            str(sum(f.size for f in hold.files)),
            due_text,
            hold.check_endpoint,
            "[green]yes[/green]" if not problems else "[red]no[/red]: " + "; ".join(problems),
        )
    out.print(table)
    unsafe = sum(1 for _, _, p in rows if p)
    total = sum(sum(f.size for f in h.files) for h, _, p in rows if not p)
    passing = len(rows) - unsafe
    out.print(f"{len(rows)} hold(s); {passing} would pass the safety rule today ({total} bytes); {unsafe} would not")


async def _dry_run(
    config: BeamflowConfig, url: str, beamline: str | None
) -> list[tuple[RetentionHold, str, list[str]]]:
    async with operator_bus(url) as js:
        ledger = await Ledger.open(js)
        pending = await stored_holds(js, subjects.HOLD_SET)
        expired = await stored_holds(js, subjects.HOLD_EXPIRED)
        candidates = [(h, f"in {when(h.expires_at)}") for h in pending]
        waiting = {(h.scan_id, h.endpoint) for h in pending}
        candidates += [(h, "expired") for h in expired if (h.scan_id, h.endpoint) not in waiting]
        candidates = [(h, due) for h, due in candidates if beamline is None or h.beamline == beamline]
        rows: list[tuple[RetentionHold, str, list[str]]] = []
        now = utcnow()
        loop = asyncio.get_running_loop()
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("checking holds against the safety rule", total=len(candidates))
            for hold, due in candidates:
                record = await ledger.get(hold.scan_id)
                if record is not None and hold.endpoint in record.prunes:
                    progress.advance(task)
                    continue  # already pruned: nothing left to do
                verdict = await loop.run_in_executor(None, evaluate, config, hold, record, now, None, False)
                rows.append((hold, due, verdict.problems))
                progress.advance(task)
    rows.sort(key=lambda row: row[0].expires_at)
    return rows


def _parse_until(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date; write e.g. 2027-01-31 or 2027-01-31T12:00:00+00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@hold_app.command("extend")
def extend(
    scans: Annotated[list[str], typer.Argument(help="Scan ids whose hold to extend.")],
    by: Annotated[str | None, typer.Option("--by", help="Extend from now by this long, e.g. 30d or 12h.")] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Keep until this date/time (ISO 8601, UTC if no zone).")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help="Which endpoint's hold (if several).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Keep scans longer: the hold is placed again with a later expiry (it survives every restart)."""
    if (by is None) == (until is None):
        console.print("[red]give exactly one of --by DURATION or --until DATE[/red]")
        raise typer.Exit(2)
    target = utcnow() + parse_duration(by) if by is not None else _parse_until(until or "")
    if target <= utcnow():
        console.print("[red]that time is in the past; use `beamflow hold release` to make a hold due now[/red]")
        raise typer.Exit(2)
    _change(scans, endpoint, target, "extended", config, nats_url)


@hold_app.command("release")
def release(
    scans: Annotated[list[str], typer.Argument(help="Scan ids whose hold to release.")],
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help="Which endpoint's hold (if several).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """End holds now: the pruner deletes the scans at once, if the safety rule holds."""
    _change(scans, endpoint, utcnow(), "released", config, nats_url)


def _change(
    scans: list[str], endpoint: str | None, expires_at: datetime, action: str, config_path: object, nats_url: str | None
) -> None:
    loaded = load_or_exit(config_path)  # type: ignore[arg-type]
    try:
        changed = asyncio.run(_reschedule(loaded, bus_url(loaded, nats_url), scans, endpoint, expires_at, action))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for hold in changed:
        out.print(f"{hold.scan_id} on {hold.endpoint}: hold {action}, expires {when(hold.expires_at)}")


async def _reschedule(
    config: BeamflowConfig, url: str, scans: list[str], endpoint: str | None, expires_at: datetime, action: str
) -> list[RetentionHold]:
    changed: list[RetentionHold] = []
    async with operator_bus(url) as js:
        ledger = await Ledger.open(js)
        for scan_id in scans:
            record = await ledger.get(scan_id)
            if record is None:
                raise ScanNotFound(f"no scan {scan_id!r} in the ledger; `beamflow status` lists recent scan ids")
            _, hold = holds.latest_hold(record, endpoint)
            changed.append(await holds.reschedule(js, config, hold, expires_at, action))
    return changed
