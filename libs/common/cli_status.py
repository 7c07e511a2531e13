"""``beamflow status``: where every scan is, read from the ledger.

``beamflow status`` lists the most recently changed scans, one row each with a column per stage;
``beamflow status SCAN`` shows one scan's whole story: its files, each copy with its checksums, each
retention hold and its expiry, prunes, failures with their reasons, external ids, and the history.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
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
from beamflow.common.errors import BeamflowError, ScanNotFound
from beamflow.common.ledger import SCAN_STATES, Ledger, ScanRecord, ScanState
from rich.console import Group
from rich.table import Table

#: Results go to stdout; piped into a file or another program they keep their full width.


def when(moment: datetime | None) -> str:
    """A time as operators read it: local, to the second, with its zone."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


def status(
    scan: Annotated[str | None, typer.Argument(help="A scan id: show its whole history instead of the list.")] = None,
    beamline: Annotated[str | None, typer.Option("--beamline", "-b", help="Only this beamline.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", "-s", help=f"Only scans in this state: {', '.join(SCAN_STATES)}.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many rows.")] = 20,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Where scans are: recent scans one row each, or one scan's copies, holds, prunes and failures."""
    if state is not None and state not in SCAN_STATES:
        console.print(f"[red]--state must be one of {', '.join(SCAN_STATES)}, not {state!r}[/red]")
        raise typer.Exit(2)
    url = bus_url(load_or_exit(config), nats_url)
    try:
        if scan is not None:
            out.print(scan_report(asyncio.run(_one(url, scan))))
        else:
            out.print(scan_table(asyncio.run(_recent(url, limit, beamline, state))))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


async def _one(url: str, scan_id: str) -> ScanRecord:
    async with operator_bus(url) as js:
        record = await (await Ledger.open(js)).get(scan_id)
    if record is None:
        raise ScanNotFound(f"no scan {scan_id!r} in the ledger; `beamflow status` lists recent scan ids")
    return record


async def _recent(url: str, limit: int, beamline: str | None, state: ScanState | None) -> list[ScanRecord]:
    async with operator_bus(url) as js:
        return await (await Ledger.open(js)).recent(limit=limit, beamline=beamline, state=state)


def scan_table(records: list[ScanRecord]) -> Table:
    table = Table(title=f"{len(records)} most recently changed scan(s)", title_justify="left")
    columns = ("scan", "beamline", "path", "detected", "copies", "catalog", "hold until", "pruned", "failures", "state")
    for column in columns:
        table.add_column(column, no_wrap=column in ("scan", "state"))
    for r in records:
        pending = [h.expires_at for h in r.holds.values() if h.state == "pending"]
        table.add_row(
            r.scan_id,
            r.beamline,
            r.scan_path or "-",
            when(r.detected_at),
            " ".join(sorted(r.copies)) or "-",
            " ".join(k.split(":", 1)[1] for k in sorted(r.external_ids) if k.startswith("catalog:")) or "-",
            when(min(pending)) if pending else "-",
            " ".join(sorted(r.prunes)) or "-",
            str(len(r.failures)) if r.failures else "-",
            r.state,
        )
    return table


def scan_report(r: ScanRecord) -> Group:
    head = Table.grid(padding=(0, 2))
    head.add_row("scan", r.scan_id)
    head.add_row("beamline", r.beamline)
    head.add_row("state", r.state)
    head.add_row("source", f"{r.endpoint or '-'}:{r.scan_path or '-'}")
    head.add_row("detected", when(r.detected_at))
    if r.export_controlled:
        head.add_row("export", "controlled: stays at the facility")
    parts: list[Table] = [head]

    def section(table: Table, rows: int) -> None:
        parts.append(table if rows else Table(title=f"{table.title}: none", title_justify="left", show_header=False))

    files = Table(title="files", title_justify="left")
    for column in ("path", "bytes", "modified"):
        files.add_column(column)
    for scan_file in r.files:
        files.add_row(scan_file.path, str(scan_file.size), when(datetime.fromtimestamp(scan_file.mtime, UTC)))
    section(files, len(r.files))

    copies = Table(title="copies (verified)", title_justify="left")
    for column in ("endpoint", "from", "verified at", "path", "bytes", "checksum"):
        copies.add_column(column)
    for c in sorted(r.copies.values(), key=lambda c: c.step):
        for f in c.files:
            copies.add_row(
                c.endpoint, c.source_endpoint, when(c.verified_at), f.path, str(f.size), f"{f.algorithm}:{f.checksum}"
            )
    section(copies, len(r.copies))

    holds = Table(title="retention holds", title_justify="left")
    for column in ("endpoint", "check copy", "placed", "expires", "state", "last action"):
        holds.add_column(column)
    for hold in r.holds.values():
        holds.add_row(
            hold.endpoint,
            hold.check_endpoint,
            when(hold.placed_at),
            when(hold.expires_at),
            hold.state,
            hold.last_action,
        )
    section(holds, len(r.holds))

    prunes = Table(title="prunes", title_justify="left")
    for column in ("endpoint", "pruned at", "files", "bytes freed", "checked copy"):
        prunes.add_column(column)
    for pruned in r.prunes.values():
        prunes.add_row(
            pruned.endpoint,
            when(pruned.pruned_at),
            str(len(pruned.files)),
            str(pruned.freed_bytes),
            pruned.check_endpoint,
        )
    section(prunes, len(r.prunes))

    if r.failures:
        failures = Table(title="failures", title_justify="left")
        for column in ("at", "service", "error", "reason"):
            failures.add_column(column)
        for failure in r.failures:
            failures.add_row(when(failure.at), failure.service, failure.error_type, failure.reason)
        section(failures, len(r.failures))
    if r.external_ids:
        ids = Table(title="external ids", title_justify="left")
        ids.add_column("what")
        ids.add_column("id")
        for key, value in sorted(r.external_ids.items()):
            ids.add_row(key, value)
        parts.append(ids)
    if r.warnings:
        warned = Table(title="warnings", title_justify="left")
        warned.add_column("warning")
        for warning in r.warnings:
            warned.add_row(warning)
        parts.append(warned)

    history = Table(title="history", title_justify="left")
    for column in ("at", "what", "detail"):
        history.add_column(column)
    for entry in r.history:
        history.add_row(when(entry.at), entry.what, entry.detail)
    parts.append(history)
    return Group(*parts)
