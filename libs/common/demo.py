"""``beamflow demo``: the embedded default, end to end, with simulated detectors and live progress.

Starts NATS and every service exactly as ``beamflow up`` does, writes simulated 7.3.3 (``.txt`` +
``.edf``) and 8.3.2 (``.h5``) scans into the watched folders as a detector would, one export-controlled
8.3.2 scan among them, and follows the events on the bus until every expected verified copy, dataset and
analysis has arrived. The summary counts scans detected, copies verified, datasets, analyses and failures;
the exit status is non-zero if any scan did not arrive everywhere it should.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from beamflow.common.config import BeamflowConfig, expected_destinations, load_config
from beamflow.common.endpoints import FilesystemEndpoint, TarArchiveEndpoint
from beamflow.common.events import ScanAnalyzed
from beamflow.common.observe import EventCollector
from beamflow.common.service import discover
from beamflow.common.simulate import DetectorSimulator, SimulatedScan
from beamflow.common.stack import Stack
from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass
class Expectation:
    beamline: str
    scan_path: str
    destinations: set[str]
    catalogued: bool = False
    analysed: bool = False


def expected_analysis(config: BeamflowConfig, beamline: str, destinations: set[str]) -> bool:
    """A scan is analysed when its beamline runs an analysis and the copy it starts from is made."""
    analysis = config.beamlines[beamline].analysis
    return analysis is not None and analysis.source in destinations


def expected_in_catalog(config: BeamflowConfig, beamline: str, scan_path: str, destinations: set[str]) -> bool:
    """A scan becomes a dataset when its beamline is catalogued, the catalogued copy is made, and it is not
    export-controlled (such a scan may reach a catalogued copy inside the facility, but is never listed)."""
    settings = config.beamlines[beamline]
    catalog = settings.catalog
    return (
        catalog is not None and catalog.destination in destinations and not settings.export_control.matches(scan_path)
    )


def _table(
    config: BeamflowConfig,
    written: dict[str, int],
    collector: EventCollector,
    expected: dict[str, int],
    datasets: dict[str, int],
    analyses: dict[str, int],
    started: float,
) -> Table:
    table = Table(title="beamflow demo", caption=f"{time.monotonic() - started:5.1f} s")
    for column in ("beamline", "scans written", "detected", "copies verified", "catalogued", "analysed", "failed"):
        table.add_column(column, justify="right" if column != "beamline" else "left")
    for beamline in config.beamlines:
        new = sum(1 for e in collector.new if e.beamline == beamline)
        moved = sum(1 for e in collector.moved if e.beamline == beamline)
        failed = sum(1 for e in collector.failed if e.beamline == beamline)
        catalogued = len({e.scan_id for e in collector.ingested if e.beamline == beamline})
        analysed = len({e.scan_id for e in collector.of(ScanAnalyzed) if e.beamline == beamline})
        table.add_row(
            beamline,
            str(written.get(beamline, 0)),
            str(new),
            f"{moved} / {expected.get(beamline, 0)}",
            f"{catalogued} / {datasets.get(beamline, 0)}",
            f"{analysed} / {analyses.get(beamline, 0)}",
            f"[red]{failed}[/red]" if failed else "0",
        )
    return table


async def run_demo(config_path: Path, scans: int, workdir: Path | None, timeout: float, console: Console) -> bool:
    run_dir = (workdir or Path.cwd() / ".beamflow" / "demo-runs" / datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["BEAMFLOW_HOME"] = str(run_dir)  # the demo config puts every folder under it
    config = load_config(config_path)
    bl733 = config.filesystem_root(config.beamlines["bl733"].watch.endpoint) if "bl733" in config.beamlines else None
    bl832 = config.filesystem_root(config.beamlines["bl832"].watch.endpoint) if "bl832" in config.beamlines else None
    for endpoint in config.endpoints.values():
        if isinstance(endpoint, FilesystemEndpoint | TarArchiveEndpoint):  # folders on this machine
            endpoint.root.mkdir(parents=True, exist_ok=True)

    console.print(f"demo folder: {run_dir}")
    services = list(discover())
    cataloguing = "ingestor" in services
    stack = Stack(config, config_path, services)
    await stack.start()
    collector: EventCollector | None = None
    try:
        await stack.wait_ready()
        console.print(f"NATS at {stack.url}; services: {', '.join(stack.processes)}")
        collector = await EventCollector(stack.url, stack.operator_auth).start()
        simulator = DetectorSimulator(bl733, bl832, seed=7)
        written: dict[str, int] = {}
        expectations: list[Expectation] = []
        started = time.monotonic()

        def simulate() -> list[SimulatedScan]:
            made: list[SimulatedScan] = []
            for i in range(scans):
                if bl733 is not None:
                    made.append(simulator.scan_733(i))
                if bl832 is not None:
                    made.append(simulator.scan_832(i, restricted=(i == scans - 1)))
            return made

        for scan in await asyncio.to_thread(simulate):
            written[scan.beamline] = written.get(scan.beamline, 0) + 1
            destinations = expected_destinations(config, scan.beamline, scan.scan_path)
            catalogued = cataloguing and expected_in_catalog(config, scan.beamline, scan.scan_path, destinations)
            analysed = expected_analysis(config, scan.beamline, destinations)
            expectations.append(Expectation(scan.beamline, scan.scan_path, destinations, catalogued, analysed))
        expected: dict[str, int] = {}
        datasets: dict[str, int] = {}
        analyses: dict[str, int] = {}
        for exp in expectations:
            expected[exp.beamline] = expected.get(exp.beamline, 0) + len(exp.destinations)
            datasets[exp.beamline] = datasets.get(exp.beamline, 0) + exp.catalogued
            analyses[exp.beamline] = analyses.get(exp.beamline, 0) + exp.analysed
        total, total_datasets, total_analyses = sum(expected.values()), sum(datasets.values()), sum(analyses.values())
        # An analysed scan that is catalogued also becomes a derived dataset, linked to its raw one.
        total_derived = sum(exp.analysed and exp.catalogued for exp in expectations)

        def arrived(c: EventCollector) -> bool:
            copies = len({(e.scan_id, e.destination_endpoint) for e in c.moved})
            listed = len({e.scan_id for e in c.ingested if e.dataset_kind == "raw"})
            analysed = len({e.scan_id for e in c.of(ScanAnalyzed)})
            derived = len({e.scan_id for e in c.ingested if e.dataset_kind == "derived"})
            return (
                copies >= total and listed >= total_datasets and analysed >= total_analyses and derived >= total_derived
            )

        def table() -> Table:
            return _table(config, written, collector, expected, datasets, analyses, started)

        with Live(table(), console=console, refresh_per_second=8) as live:
            deadline = time.monotonic() + timeout
            while not arrived(collector) and time.monotonic() < deadline:
                live.update(table())
                await asyncio.sleep(0.125)  # screen refresh, not synchronisation
            live.update(table())
        elapsed = time.monotonic() - started
        return _summary(console, config, collector, expectations, elapsed, run_dir)
    finally:
        if collector is not None:
            await collector.close()
        await stack.stop()


def _summary(
    console: Console,
    config: BeamflowConfig,
    collector: EventCollector,
    expectations: list[Expectation],
    elapsed: float,
    run_dir: Path,
) -> bool:
    by_path = {(e.beamline, e.scan_path): e for e in collector.new}
    arrived = {(e.scan_id, e.destination_endpoint) for e in collector.moved}
    listed = {e.scan_id: e for e in collector.ingested if e.dataset_kind == "raw"}
    analysed = {e.scan_id: e for e in collector.of(ScanAnalyzed)}
    missing: list[str] = []
    for exp in expectations:
        new = by_path.get((exp.beamline, exp.scan_path))
        if new is None:
            missing.append(f"{exp.beamline} {exp.scan_path}: never detected")
            continue
        for dest in sorted(exp.destinations):
            if (new.scan_id, dest) not in arrived:
                missing.append(f"{exp.beamline} {exp.scan_path}: no verified copy at {dest}")
        if exp.catalogued and new.scan_id not in listed:
            missing.append(f"{exp.beamline} {exp.scan_path}: no dataset in the catalog")
        if not exp.catalogued and new.scan_id in listed:
            missing.append(f"{exp.beamline} {exp.scan_path}: catalogued although it must not be")
        if exp.analysed and new.scan_id not in analysed:
            missing.append(f"{exp.beamline} {exp.scan_path}: not analysed")
    moved_bytes = sum(e.bytes for e in collector.moved)
    console.print()
    console.print(f"scans written   {len(expectations)}")
    console.print(f"scans detected  {len(by_path)}")
    console.print(f"copies verified {len(arrived)} of {sum(len(e.destinations) for e in expectations)} expected")
    wanted = sum(e.catalogued for e in expectations)
    console.print(f"datasets        {len(listed)} of {wanted} expected in the catalog")
    console.print(f"analyses        {len(analysed)} of {sum(e.analysed for e in expectations)} expected")
    outputs = sum(len(e.outputs) for e in analysed.values())
    if outputs:
        console.print(f"outputs         {outputs} file(s) brought back (`beamflow job ls` lists the jobs)")
    catalogs = sorted({e.catalog for e in listed.values()})
    if catalogs:
        console.print(f"catalog         {', '.join(catalogs)} (pids: `beamflow status SCAN`)")
    console.print(f"failed          {len(collector.failed)}")
    console.print(
        f"throughput      {len(by_path) / elapsed:.1f} scans/s, {moved_bytes / elapsed / 1e6:.1f} MB/s "
        f"verified copies ({elapsed:.2f} s)"
    )
    for failure in collector.failed:
        console.print(f"[red]dead letter[/red] {failure.beamline} {failure.service}: {failure.reason}")
    for line in missing:
        console.print(f"[red]missing[/red] {line}")
    console.print(f"files and logs: {run_dir}")
    ok = not missing and not collector.failed
    console.print("[green]every scan arrived, verified[/green]" if ok else "[red]some scans did not arrive[/red]")
    return ok
