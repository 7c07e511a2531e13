"""Status benchmark: ``beamflow status SCAN`` with 100,000 scans in the ledger.

What it measures
    The time to answer ``beamflow status SCAN`` for a random scan when the ledger holds N scans (default
    100,000). Target: median under 100 ms.

How
    An embedded nats-server is started and the ledger bucket provisioned as the services do. N realistic
    scan records (a detected 8.3.2 scan, a verified copy at data with its checksum, a pending hold, a
    prune, a short history) are written into the ``LEDGER`` KV bucket, pipelined. Then, for randomly
    chosen scans (seeded):

    (a) the lookup and the report as the command makes them: ``Ledger.get`` on an open connection, plus
        rendering ``cli_status.scan_report`` into a string, ``--lookups`` times (median, p95, max);
    (b) the whole command as a user types it, ``python -m beamflow.common.cli status SCAN --nats URL``,
        a new process each time, ``--runs`` times (median, min): this includes starting Python and
        importing the CLI, which is a constant no ledger size changes; it is reported next to
        ``python -m beamflow.common.cli --help`` (the same start-up, no NATS, no ledger) for that reason.

    The target applies to (a), which is what grows with the ledger; (b) is printed so nobody has to guess.

Run: ``.venv/bin/python bench/status.py`` (or ``make bench-status``). Figures go to stdout and to
``bench/results/status.json``.
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
from beamflow.common import subjects
from beamflow.common.bus import ensure_streams
from beamflow.common.cli_status import scan_report
from beamflow.common.events import FileCopy, ScanFile, scan_id_for, utcnow
from beamflow.common.ledger import CopyRecord, HistoryEntry, HoldRecord, Ledger, PruneRecord, ScanRecord
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, test_config
from rich.console import Console

import harness

TARGET_MS = 100.0


def record(i: int) -> ScanRecord:
    path = f"2026/proposal_{i % 97:03d}/scan_{i:06d}.h5"
    scan_id = scan_id_for("bl832", "spot832", path.removesuffix(".h5"))
    now = utcnow()
    copy = FileCopy(path=path, size=1_000_000 + i, checksum=f"{i:032x}", algorithm="xxh3-128")
    return ScanRecord(
        scan_id=scan_id,
        beamline="bl832",
        endpoint="spot832",
        scan_path=path.removesuffix(".h5"),
        files=[ScanFile(path=path, size=copy.size, mtime=now.timestamp())],
        detected_at=now,
        copies={
            "data832": CopyRecord(
                endpoint="data832",
                source_endpoint="spot832",
                step=1,
                files=[copy],
                verified_at=now,
                copied=True,
                bytes=copy.size,
                seconds=0.01,
            )
        },
        holds={
            "spot832": HoldRecord(
                endpoint="spot832",
                check_endpoint="data832",
                placed_at=now,
                expires_at=now + timedelta(days=1),
                state="expired",
                last_action="placed",
                files=[copy],
            )
        },
        prunes={
            "spot832": PruneRecord(
                endpoint="spot832", check_endpoint="data832", pruned_at=now, files=[path], freed_bytes=copy.size
            )
        },
        history=[
            HistoryEntry(at=now, what="detected"),
            HistoryEntry(at=now, what="copy data832"),
            HistoryEntry(at=now, what="hold spot832"),
            HistoryEntry(at=now, what="pruned spot832"),
        ],
        applied=[f"{scan_id}:new", f"{scan_id}:moved:data832", f"{scan_id}:pruned:spot832"],
    )


async def fill(url: str, count: int, progress: Any) -> list[str]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    ids: list[str] = []
    pending = []
    for i in range(count):
        r = record(i)
        ids.append(r.scan_id)
        # A KV put is a publish on the bucket's subject; pipelining them fills 100k records in seconds.
        pending.append(await js.publish_async(f"$KV.{subjects.LEDGER_BUCKET}.{r.scan_id}", r.to_json()))
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()
            progress(i + 1)
    await asyncio.gather(*pending)
    await nc.close()
    return ids


async def lookups(url: str, ids: list[str], n: int, rng: random.Random) -> list[float]:
    nc = await nats.connect(url)
    ledger = await Ledger.open(nc.jetstream())
    times = []
    for scan_id in rng.sample(ids, n):
        started = time.perf_counter()
        found = await ledger.get(scan_id)
        assert found is not None and found.scan_id == scan_id
        sink = Console(file=io.StringIO(), width=200)
        sink.print(scan_report(found))
        times.append((time.perf_counter() - started) * 1000)
    await nc.close()
    return times


def command(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "beamflow.common.cli", *args], capture_output=True, text=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"beamflow {' '.join(args)} failed: {done.stderr}")
    return elapsed


def main() -> int:
    parser = harness.parser("status", __doc__ or "", epilog="Target: median of (a) under 100 ms.")
    parser.add_argument("--scans", type=int, default=100_000, help="scans in the ledger (default 100000)")
    parser.add_argument("--lookups", type=int, default=500, help="in-process lookups to time (default 500)")
    parser.add_argument("--runs", type=int, default=20, help="whole-command runs to time (default 20)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with harness.scratch("status") as base:
        config = test_config(base)
        config_file = config_to_yaml(config, base / "config.yaml")
        server = EmbeddedNats(base / "nats", port=0)

        async def setup() -> list[str]:
            await server.start()
            nc = await nats.connect(server.url)
            await ensure_streams(nc.jetstream(), config)
            await nc.close()
            started = time.perf_counter()
            ids = await fill(server.url, args.scans, lambda n: print(f"\r  ledger: {n} records", end="", flush=True))
            print()
            print(f"  ledger: {args.scans} records written in {time.perf_counter() - started:.1f} s")
            return ids

        try:
            ids = asyncio.run(setup())
            inproc = asyncio.run(lookups(server.url, ids, min(args.lookups, len(ids)), rng))
            common = ["--nats", server.url, "-c", str(Path(config_file))]
            whole = [command(["status", rng.choice(ids), *common]) for _ in range(args.runs)]
            startup = [command(["--help"]) for _ in range(max(3, args.runs // 4))]
        finally:
            server.stop()

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, round(q * (len(values) - 1)))]

    results = {
        "benchmark": "status",
        "scans": args.scans,
        "target_ms": TARGET_MS,
        "lookup_ms": {
            "median": round(statistics.median(inproc), 2),
            "p95": round(pct(inproc, 0.95), 2),
            "max": round(max(inproc), 2),
        },
        "command_ms": {"median": round(statistics.median(whole), 1), "min": round(min(whole), 1)},
        "startup_ms": {"median": round(statistics.median(startup), 1)},
        "pass": statistics.median(inproc) < TARGET_MS,
    }
    harness.save(results, args.output)
    lk, cmd = results["lookup_ms"], results["command_ms"]
    print()
    print(f"status: {args.scans} scans in the ledger, random scans (seed {args.seed})")
    print(
        f"(a) lookup + report: median {lk['median']} ms, p95 {lk['p95']} ms, max {lk['max']} ms "
        f"(target < {TARGET_MS:.0f} ms) {'PASS' if results['pass'] else 'MISS'}"
    )
    print(
        f"(b) whole command `beamflow status SCAN`: median {cmd['median']} ms, min {cmd['min']} ms; "
        f"of which Python start-up and CLI import (`beamflow --help`): median {results['startup_ms']['median']} ms"
    )
    return 1 if args.strict and not results["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
