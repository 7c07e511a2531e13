"""Operator commands of the archiver: ``beamflow archive PROPOSAL``, ``beamflow archive ls PROPOSAL`` and
``beamflow restore SCAN --to ENDPOINT``. Registered through the ``beamflow.commands`` entry point, so the
core CLI never imports the archiver.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Annotated

import typer
from beamflow.archiver.handler import backend_for
from beamflow.archiver.planning import parse_cycle
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.archive_hpss import HpssArchive
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
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.errors import BeamflowError, ScanNotFound
from beamflow.common.events import ArchiveRequested
from beamflow.common.ledger import Ledger, ScanRecord
from rich.table import Table

BeamlineOption = Annotated[str, typer.Option("--beamline", "-b", help="The beamline whose archive this is.")]


def _policy(config: BeamflowConfig, beamline: str) -> ArchivePolicy:
    bl = config.beamlines.get(beamline)
    if bl is None or bl.archive is None:
        console.print(f"[red]beamline {beamline!r} has no archive policy in this configuration[/red]")
        raise typer.Exit(2)
    return bl.archive


def archive(
    words: Annotated[list[str], typer.Argument(help="PROPOSAL to archive now, or `ls PROPOSAL` to list its bundles.")],
    beamline: BeamlineOption,
    cycle: Annotated[str | None, typer.Option(help="Only this beam cycle, e.g. 2026-1 or 2026-2.")] = None,
    bundle: Annotated[
        str | None, typer.Option("--bundle", help="With `ls`: list this bundle's members as the archive reads them.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Archive a proposal's verified copies now (the archiver does it), or list its bundles.

    `beamflow archive ls PROPOSAL -b BL` reads the archive's own listing and sets it beside what the ledger
    records; `--bundle NAME` lists one bundle's members. On HPSS each listing is a Slurm job.
    """
    loaded = load_or_exit(config)
    policy = _policy(loaded, beamline)
    if cycle is not None:
        try:
            parse_cycle(cycle)
        except ValueError as exc:
            console.print(f"[red]--cycle: {exc}[/red]")
            raise typer.Exit(2) from None
    url = bus_url(loaded, nats_url)
    try:
        if words[0] == "ls" and len(words) == 2:
            if bundle is not None:
                out.print(asyncio.run(_members(loaded, policy, beamline, words[1], bundle)))
                return
            with console.status(f"listing {words[1]} on {policy.endpoint}"):
                summary, table = asyncio.run(_listing(url, loaded, beamline, words[1]))
            out.print(summary)
            out.print(table)
            return
        if len(words) != 1 or bundle is not None:
            console.print("[red]usage: beamflow archive PROPOSAL | beamflow archive ls PROPOSAL [--bundle NAME][/red]")
            raise typer.Exit(2)
        request = ArchiveRequested(beamline=beamline, proposal=words[0], cycle=cycle)
        asyncio.run(_request(url, request))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(
        f"archive of {words[0]} ({cycle or 'every cycle'}) requested on {beamline}; the archiver writes to "
        f"{policy.endpoint}. Follow it with `beamflow archive ls {words[0]} -b {beamline}`"
    )


async def _request(url: str, request: ArchiveRequested) -> None:
    async with operator_bus(url) as js:
        await publish_event(js, request, url)


async def _records(url: str, beamline: str) -> list[ScanRecord]:
    async with operator_bus(url) as js:
        return await (await Ledger.open(js)).all(beamline=beamline)


async def _listing(url: str, config: BeamflowConfig, beamline: str, proposal: str) -> tuple[str, Table]:
    policy = _policy(config, beamline)
    in_ledger: dict[str, list[ScanRecord]] = defaultdict(list)
    waiting = 0
    for record in await _records(url, beamline):
        if policy.proposal_of(record.scan_path or "") != proposal:
            continue
        copy = record.copies.get(policy.endpoint)
        if copy is None:
            waiting += record.copies.get(policy.source) is not None
            continue
        in_ledger[copy.external_id or "?"].append(record)
    backend = backend_for(config, policy)
    listable = not isinstance(backend, HpssArchive) or backend.endpoint.listing_dir is not None
    in_archive = {f"{b.directory}/{b.name}": b for b in await backend.bundles(beamline, proposal)}
    summary = (
        f"{proposal} on {policy.endpoint}: {len(set(in_ledger) | set(in_archive))} bundle(s); "
        f"{waiting} verified scan(s) not archived"
    )
    if not listable:
        summary += f" (the archive is not listed: {policy.endpoint} has no listing_dir; this is the ledger's view)"
    table = Table()
    for column in ("bundle", "in archive", "scans", "members", "bytes", "archived"):
        table.add_column(column)
    for path in sorted(set(in_ledger) | set(in_archive)):
        listed = in_archive.get(path)
        shown = "not listed" if not listable else ("yes" if listed is not None else "[red]MISSING[/red]")
        records = in_ledger.get(path, [])
        copies = [r.copies[policy.endpoint] for r in records]
        members = sum(len(c.files) for c in copies) if copies else len(listed.members) if listed else 0
        table.add_row(
            path,
            shown,
            str(len(records)) if records else "[yellow]not in ledger[/yellow]",
            str(members),
            str(sum(c.bytes for c in copies)) if copies else "-",
            max(c.verified_at for c in copies).isoformat(timespec="seconds") if copies else "-",
        )
    return summary, table


async def _members(config: BeamflowConfig, policy: ArchivePolicy, beamline: str, proposal: str, name: str) -> Table:
    path = name if "/" in name else f"{beamline}/raw/{proposal}/{name}"
    entries = await backend_for(config, policy).members(path)
    table = Table(title=f"{path} on {policy.endpoint}: {len(entries)} member(s)")
    table.add_column("member")
    table.add_column("bytes", justify="right")
    for entry in entries:
        table.add_row(entry.name, str(entry.size))
    return table


def restore(
    scan: Annotated[str, typer.Argument(help="The scan id (see `beamflow status`).")],
    to: Annotated[str, typer.Option("--to", help="A filesystem endpoint to restore into.")],
    whole_bundle: Annotated[
        bool, typer.Option("--whole-bundle", help="Restore every member of the scan's bundle, not only the scan.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Bring a scan's files back from the archive into an endpoint (paths as they were archived)."""
    loaded = load_or_exit(config)
    target = loaded.endpoints.get(to)
    if not isinstance(target, FilesystemEndpoint):
        console.print(f"[red]--to must name a filesystem endpoint of this configuration, not {to!r}[/red]")
        raise typer.Exit(2)
    try:
        restored = asyncio.run(_restore(bus_url(loaded, nats_url), loaded, scan, target, whole_bundle))
    except BeamflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for path in restored:
        out.print(f"restored {path}")
    out.print(f"{len(restored)} file(s) restored into {to}")


async def _restore(
    url: str, config: BeamflowConfig, scan_id: str, target: FilesystemEndpoint, whole_bundle: bool
) -> list[object]:
    async with operator_bus(url) as js:
        record = await (await Ledger.open(js)).get(scan_id)
    if record is None:
        raise ScanNotFound(f"no scan {scan_id!r} in the ledger; `beamflow status` lists scan ids")
    policy = _policy(config, record.beamline)
    copy = record.copies.get(policy.endpoint)
    if copy is None or copy.external_id is None:
        raise ScanNotFound(f"scan {scan_id} is not archived on {policy.endpoint} (see `beamflow status {scan_id}`)")
    backend = backend_for(config, policy)
    members = None if whole_bundle else [f.path for f in copy.files]
    return list(await backend.restore(copy.external_id, members, target.root))


def register(app: typer.Typer) -> None:
    app.command()(archive)
    app.command()(restore)
