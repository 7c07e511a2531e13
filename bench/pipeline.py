"""Pipeline benchmark: small scans through watcher -> mover on the embedded NATS server.

What it measures
    Scans per second and the latency from a file's close to its ``scan.moved`` event, for single-file
    8.3.2-style scans (``.h5``, 1 KiB each by default) copied to one filesystem destination.
    Targets: >= 200 scans/s, latency p50 < 20 ms and p99 < 100 ms.

How
    A config from ``test_config`` (one beamline ``bl832`` watching ``<tmp>/source``, destination
    ``<tmp>/data``) with realistic delivery settings (default concurrency, ack_wait 30 s) and the long
    watcher settle of ``test_config``, so only inotify close events trigger announcements. It is written as
    YAML and run by ``Stack``: the embedded nats-server plus one ``beamflow run watcher`` and one
    ``beamflow run mover`` process, exactly as ``beamflow up`` runs them. An ``EventCollector`` on the bus
    stamps every stored event with the time it arrived here.

    The folders scans are written into exist before the services start, so their inotify watches exist.
    Two phases, each in its own folder with distinct scan paths:

    (a) throughput: N files are written as fast as possible (in a worker thread, so the collector keeps
        receiving meanwhile), each file's close time recorded; scans/s = N / (arrival of the last
        ``scan.moved`` - first close). Latency percentiles of this burst are reported too.
    (b) paced latency: N files at a steady rate (default 200/s), each scheduled at an absolute deadline;
        latency per scan = arrival of its ``scan.moved`` - its close time (p50, p95, p99, max).

    ``scan.moved`` events are matched to files by ``scan_id_for("bl832", "source", scan_path)``. Dead letters
    (``scan.failed``) of each phase are counted and must be 0. The latency is split into watcher
    (close -> ``scan.new`` stored) and mover (``scan.new`` -> ``scan.moved`` stored) to show where time goes.

Run: ``.venv/bin/python bench/pipeline.py`` (or ``make bench-pipeline``). Figures go to stdout and to
``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from beamflow.common.config import DeliveryConfig
from beamflow.common.events import ScanFailed, ScanMoved, ScanNew, scan_id_for
from beamflow.common.observe import EventCollector
from beamflow.common.simulate import write_small
from beamflow.common.stack import Stack
from beamflow.common.testing import config_to_yaml, test_config

import harness

BEAMLINE = "bl832"
ENDPOINT = "source"
DESTINATION = "data"
SUFFIX = ".h5"

TARGET_RATE = 200.0  # scans/s, at least
TARGET_P50_MS = 20.0  # below
TARGET_P99_MS = 100.0  # below


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Tracker:
    """Reads the collector's events incrementally (the collector keeps every event in one list)."""

    collector: EventCollector
    position: int = 0
    new_at: dict[str, float] = field(default_factory=dict)
    moved_at: dict[str, float] = field(default_factory=dict)
    moved_duplicates: int = 0
    failed: list[ScanFailed] = field(default_factory=list)

    def update(self) -> None:
        events = self.collector.events
        stamps = self.collector.received_at
        end = min(len(events), len(stamps))
        for i in range(self.position, end):
            event, at = events[i], stamps[i]
            if isinstance(event, ScanMoved):
                if event.scan_id in self.moved_at:
                    self.moved_duplicates += 1
                else:
                    self.moved_at[event.scan_id] = at
            elif isinstance(event, ScanNew):
                self.new_at.setdefault(event.scan_id, at)
            elif isinstance(event, ScanFailed):
                self.failed.append(event)
        self.position = end

    def missing(self, ids: list[str]) -> int:
        self.update()
        return sum(1 for scan_id in ids if scan_id not in self.moved_at)

    async def wait_all_moved(self, ids: list[str], timeout: float) -> bool:
        pending = set(ids)

        def done(_: EventCollector) -> bool:
            self.update()
            pending.difference_update([s for s in list(pending) if s in self.moved_at])
            return not pending

        try:
            await self.collector.wait_for(done, timeout)
        except AssertionError:
            return False
        return True


@dataclass
class Phase:
    name: str
    scan_paths: list[str]
    closes: list[float]
    ids: list[str]
    write_seconds: float


def scan_paths(folder: str, n: int) -> list[str]:
    return [f"{folder}/scan_{i:05d}" for i in range(n)]


def _write_all(root: Path, paths: list[str], payload: bytes) -> list[float]:
    return [write_small(root, p + SUFFIX, payload) for p in paths]


async def burst(root: Path, folder: str, n: int, payload: bytes) -> Phase:
    paths = scan_paths(folder, n)
    started = time.monotonic()
    # A worker thread writes, so the event loop keeps stamping arriving events while files are written.
    closes = await asyncio.to_thread(_write_all, root, paths, payload)
    return Phase(folder, paths, closes, [scan_id_for(BEAMLINE, ENDPOINT, p) for p in paths], time.monotonic() - started)


async def paced(root: Path, folder: str, n: int, rate: float, payload: bytes) -> Phase:
    paths = scan_paths(folder, n)
    closes: list[float] = []
    start = time.monotonic() + 0.05
    for i, path in enumerate(paths):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing to an absolute schedule, not waiting for an outcome
        closes.append(write_small(root, path + SUFFIX, payload))
    return Phase(folder, paths, closes, [scan_id_for(BEAMLINE, ENDPOINT, p) for p in paths], time.monotonic() - start)


def summarize(phase: Phase, tracker: Tracker) -> dict[str, Any]:
    tracker.update()
    latencies: list[float] = []
    watcher: list[float] = []
    mover: list[float] = []
    for scan_id, closed in zip(phase.ids, phase.closes, strict=True):
        moved = tracker.moved_at.get(scan_id)
        new = tracker.new_at.get(scan_id)
        if moved is not None:
            latencies.append((moved - closed) * 1000)
        if new is not None:
            watcher.append((new - closed) * 1000)
            if moved is not None:
                mover.append((moved - new) * 1000)
    ids = set(phase.ids)
    arrived = [tracker.moved_at[s] for s in phase.ids if s in tracker.moved_at]
    span = (max(arrived) - min(phase.closes)) if arrived else float("nan")
    return {
        "scans": len(phase.ids),
        "moved": len(arrived),
        "missing": len(phase.ids) - len(arrived),
        "dead_letters": sum(1 for f in tracker.failed if f.scan_id in ids),
        "write_seconds": round(phase.write_seconds, 3),
        "written_per_s": round(len(phase.ids) / phase.write_seconds, 1) if phase.write_seconds else None,
        "seconds_first_close_to_last_moved": round(span, 3),
        "scans_per_s": round(len(arrived) / span, 1) if arrived and span > 0 else 0.0,
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2) if latencies else float("nan"),
        },
        "watcher_ms": {"p50": round(percentile(watcher, 50), 2), "p99": round(percentile(watcher, 99), 2)},
        "mover_ms": {"p50": round(percentile(mover, 50), 2), "p99": round(percentile(mover, 99), 2)},
    }


class CpuMeter:
    """CPU seconds used by each process of the stack (and this one) between two readings."""

    def __init__(self, stack: Stack) -> None:
        pids = {name: proc.pid for name, proc in stack.processes.items()}
        pids["nats-server"] = stack.server.pid if stack.server is not None else None
        pids["bench (writer+collector)"] = os.getpid()
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items() if pid is not None}
        self.last = self._read()

    def _read(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                t = proc.cpu_times()
                out[name] = t.user + t.system
            except psutil.Error:
                out[name] = float("nan")
        return out

    def lap(self) -> dict[str, float]:
        now = self._read()
        used = {name: round(now[name] - self.last.get(name, 0.0), 2) for name in now}
        self.last = now
        return used


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    config = test_config(
        base,
        beamline=BEAMLINE,
        suffixes=(SUFFIX,),
        destinations=(DESTINATION,),
        concurrency=DeliveryConfig().concurrency,
        ack_wait=timedelta(seconds=30),
    )
    # Any free port for the embedded server: the default 4222 may be taken by another NATS on this host.
    config = config.model_copy(update={"nats": config.nats.model_copy(update={"port": 0})})
    yaml_path = config_to_yaml(config, base / "beamflow.yaml")
    source = base / ENDPOINT
    for folder in ("throughput", "paced"):
        (source / folder).mkdir(parents=True)  # before the watcher starts: its inotify watch exists already
    payload = os.urandom(args.size)

    stack = Stack(config, yaml_path, ["watcher", "mover"])
    collector: EventCollector | None = None
    try:
        await stack.start()
        await stack.wait_ready()
        collector = await EventCollector(stack.url).start()
        tracker = Tracker(collector)
        cpu = CpuMeter(stack)
        print(f"stack ready: NATS {stack.url}; services {', '.join(stack.services)}; logs {stack.log_dir}")

        print(f"(a) throughput: writing {args.scans} scans of {args.size} B as fast as possible ...")
        a = await burst(source, "throughput", args.scans, payload)
        complete_a = await tracker.wait_all_moved(a.ids, args.timeout)
        if not complete_a:
            print(
                f"    only {args.scans - tracker.missing(a.ids)} of {args.scans} scan.moved arrived "
                f"within {args.timeout:.0f}s"
            )
        cpu_a = cpu.lap()
        await asyncio.sleep(1.0)  # let the mover go idle before the paced phase
        cpu.lap()

        print(f"(b) paced latency: writing {args.scans} scans at {args.rate:.0f} scans/s ...")
        b = await paced(source, "paced", args.scans, args.rate, payload)
        complete_b = await tracker.wait_all_moved(b.ids, args.timeout)
        if not complete_b:
            print(
                f"    only {args.scans - tracker.missing(b.ids)} of {args.scans} scan.moved arrived "
                f"within {args.timeout:.0f}s"
            )
        cpu_b = cpu.lap()
        await asyncio.sleep(0.5)  # a late dead letter would still be counted
        tracker.update()
        restarts = {name: proc.restarts for name, proc in stack.processes.items()}
    finally:
        if collector is not None:
            await collector.close()
        await stack.stop()

    sa, sb = summarize(a, tracker), summarize(b, tracker)
    sa["cpu_seconds"], sb["cpu_seconds"] = cpu_a, cpu_b
    return {
        "benchmark": "pipeline",
        "scans_per_phase": args.scans,
        "file_size_bytes": args.size,
        "paced_rate": args.rate,
        "concurrency": config.delivery.concurrency,
        "ack_wait_s": config.delivery.ack_wait.total_seconds(),
        "service_restarts": restarts,
        "moved_duplicates": tracker.moved_duplicates,
        "dead_letters_total": len(tracker.failed),
        "throughput": sa,
        "paced": sb,
        "targets": {
            "scans_per_s_min": TARGET_RATE,
            "p50_ms_max": TARGET_P50_MS,
            "p99_ms_max": TARGET_P99_MS,
        },
        "pass": {
            "scans_per_s": sa["missing"] == 0 and sa["scans_per_s"] >= TARGET_RATE,
            "p50": sb["missing"] == 0 and sb["latency_ms"]["p50"] < TARGET_P50_MS,
            "p99": sb["missing"] == 0 and sb["latency_ms"]["p99"] < TARGET_P99_MS,
            "no_dead_letters": len(tracker.failed) == 0,
        },
    }


def report(r: dict[str, Any]) -> None:
    a, b, ok = r["throughput"], r["paced"], r["pass"]
    print()
    print(
        f"pipeline: watcher -> mover, {r['scans_per_phase']} scans/phase of {r['file_size_bytes']} B, "
        f"concurrency {r['concurrency']}, ack_wait {r['ack_wait_s']:.0f}s"
    )
    print(f"  service restarts {r['service_restarts']}, duplicate scan.moved {r['moved_duplicates']}")
    for label, s in (("(a) throughput", a), ("(b) paced", b)):
        print(
            f"  {label}: written {s['written_per_s']}/s, moved {s['moved']}/{s['scans']}; "
            f"watcher p50 {s['watcher_ms']['p50']} ms p99 {s['watcher_ms']['p99']} ms; "
            f"mover p50 {s['mover_ms']['p50']} ms p99 {s['mover_ms']['p99']} ms"
        )
        wall = s["seconds_first_close_to_last_moved"]
        print(
            f"      CPU seconds over {wall:.1f} s wall: "
            + ", ".join(f"{k} {v:.1f}" for k, v in s["cpu_seconds"].items())
        )
    print()
    print(
        f"(a) throughput: {a['scans_per_s']:.1f} scans/s (target >= {TARGET_RATE:.0f}) "
        f"{verdict(ok['scans_per_s'])}; latency p50 {a['latency_ms']['p50']:.1f} ms, "
        f"p99 {a['latency_ms']['p99']:.1f} ms; dead letters {a['dead_letters']}"
    )
    lat = b["latency_ms"]
    print(
        f"(b) paced {r['paced_rate']:.0f}/s: latency p50 {lat['p50']:.1f} ms (target < {TARGET_P50_MS:.0f}) "
        f"{verdict(ok['p50'])}, p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms "
        f"(target < {TARGET_P99_MS:.0f}) {verdict(ok['p99'])}, max {lat['max']:.1f} ms; "
        f"dead letters {b['dead_letters']}"
    )
    print(f"dead letters total: {r['dead_letters_total']} (must be 0) {verdict(ok['no_dead_letters'])}")


def main() -> int:
    parser = harness.parser(
        "pipeline",
        __doc__ or "",
        epilog="Targets: >= 200 scans/s; close -> scan.moved p50 < 20 ms, p99 < 100 ms.",
    )
    parser.add_argument("--scans", type=int, default=2000, help="scans per phase (default 2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="paced phase rate, scans/s (default 200)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per scan file (default 1024)")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a phase's last scan.moved (default 60)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data) afterwards")
    args = parser.parse_args()

    with harness.scratch("pipeline", keep=args.keep) as base:
        try:
            results = asyncio.run(run(args, base))
        except BaseException:
            print(f"benchmark failed; service logs were under {base / 'state' / 'logs'}", file=sys.stderr)
            for log in sorted((base / "state" / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name} (last lines)", *tail, sep="\n", file=sys.stderr)
            raise
    harness.save(results, args.output)
    report(results)
    return 1 if args.strict and not all(results["pass"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
