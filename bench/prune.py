"""Prune benchmark: 100,000 retention holds expiring together, worked off by one pruner process.

What it measures
    How fast one ``pruner`` process deletes files when a burst of retention holds expires at the same
    moment, in files per second, and the pruner's peak resident memory while it does so.
    Targets: at least 1,000 files/s, peak RSS (VmHWM) under 200 MB (200 x 10^6 bytes).

How
    Everything is real: an embedded nats-server in a scratch folder, streams and the ledger bucket
    provisioned as the services do (``bus.ensure_streams``), a ``test_config`` configuration whose
    ``source`` endpoint has ``retention: {keep_for: <lead>, check_endpoint: data}``, and the pruner run as
    production runs it: ``python -m beamflow.common.cli run pruner --config <yaml> --nats <url>``, its own
    process, with production delivery settings (``DeliveryConfig`` defaults: concurrency 16, ack_wait 30 s,
    the default back-off). Raising the concurrency measured no gain here: one pruner process is bound by
    its CPU (one interpreter), not by waiting on NATS. ``--replicas K`` starts K pruner processes sharing
    the durable consumer, as production scales a service; the targets are for the default, one process.

    1. N small files (1 KiB by default, distinct content) are written under ``source/run<k>/`` (1,000 per
       folder) and identical copies under ``data/``; their xxh3-128 checksums come from
       ``beamflow.common.checksums``, as the mover computes them.
    2. The pruner process is started and waits until it is ready. The ledger service does not run: the
       records the pruner reads are written directly, as below.
    3. For every scan, 2,000 scans at a time: its ledger record, written with ``Ledger.put`` (a window's
       records at once): the scan as detected, a verified copy at ``data`` (the same size and checksum)
       and the pending hold on ``source``, as the ledger service would have folded them; then its
       ``RetentionHold``, built by ``holds.new_hold`` exactly as the mover places it, published pipelined
       (``js.publish_async``) with the headers ``publish_event`` uses (``bus.event_headers``). All N holds
       are placed at one moment with ``keep_for = --lead``, so all N message schedules fire at the same
       moment E, after the last one is placed (the report shows the time to spare).
    4. From E on, the server publishes N ``hold.expired`` messages and the pruner checks every part of the
       safety rule for each (a fresh checksum of the copy included), deletes, and publishes ``scan.pruned``.
       Three ordered consumers in this process record, with the server's stored timestamps, every
       ``hold.expired`` the scheduler fired, every ``scan.pruned`` and every dead letter. The pruner's RSS
       is sampled (psutil) every 0.25 s and its VmHWM (peak RSS) read from ``/proc/<pid>/status`` at the
       end, before it is stopped; CPU seconds of the pruner and of nats-server over the burst are shown.

    files/s = files named in ``scan.pruned`` events / (last ``scan.pruned`` stored - first one stored).
    Also shown: files / (last ``scan.pruned`` - E), which includes the scheduler firing the burst.
    Correctness is verified at the end: every source file is gone, every ``data`` copy is still there with
    its checksum, exactly N distinct scans were pruned, and the DEADLETTERS stream is empty.

Run: ``.venv/bin/python bench/prune.py`` (or ``make bench-prune``); ``--holds 5000`` for a quick run.
Figures go to stdout and to ``bench/results/prune.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import psutil
from beamflow.common import holds, subjects
from beamflow.common.bus import ensure_streams, event_headers
from beamflow.common.checksums import ALGORITHM, file_checksum, new_hasher
from beamflow.common.config import BeamflowConfig, DeliveryConfig
from beamflow.common.endpoints import RetentionRule
from beamflow.common.events import FileCopy, RetentionHold, ScanFile, scan_id_for, utcnow
from beamflow.common.ledger import CopyRecord, HistoryEntry, HoldRecord, Ledger, ScanRecord
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.testing import config_to_yaml, test_config
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

import harness

BEAMLINE = "bl832"
SOURCE = "source"
CHECK = "data"
SUFFIX = ".h5"
PER_FOLDER = 1000

TARGET_RATE = 1000.0  # files/s, at least
TARGET_MB = 200.0  # peak RSS, below
MB = 1_000_000
WINDOW = 2000  # publishes in flight at once while filling the ledger and placing holds


@dataclass(frozen=True)
class Scan:
    scan_id: str
    scan_path: str
    copy: FileCopy


def write_files(base: Path, n: int, size: int) -> list[Scan]:
    """N distinct files under source/ and identical copies under data/; plain writes, 1,000 per folder."""
    block = bytearray(os.urandom(size))
    scans: list[Scan] = []
    for folder in range((n + PER_FOLDER - 1) // PER_FOLDER):
        for root in (SOURCE, CHECK):
            (base / root / f"run{folder:03d}").mkdir(parents=True)
    for i in range(n):
        scan_path = f"run{i // PER_FOLDER:03d}/scan_{i:06d}"
        rel = scan_path + SUFFIX
        block[:8] = i.to_bytes(8, "little")  # distinct content per file
        content = bytes(block)
        for root in (SOURCE, CHECK):
            with (base / root / rel).open("wb") as fh:
                fh.write(content)
        hasher = new_hasher(ALGORITHM)
        hasher.update(content)
        copy = FileCopy(path=rel, size=size, checksum=hasher.hexdigest(), algorithm=ALGORITHM)
        scans.append(Scan(scan_id_for(BEAMLINE, SOURCE, scan_path), scan_path, copy))
    return scans


def ledger_record(scan: Scan, hold: RetentionHold, detected: datetime) -> ScanRecord:
    """The record the ledger service would hold by now: detected, copied to data and verified, hold pending."""
    copy = scan.copy
    return ScanRecord(
        scan_id=scan.scan_id,
        beamline=BEAMLINE,
        endpoint=SOURCE,
        scan_path=scan.scan_path,
        files=[ScanFile(path=copy.path, size=copy.size, mtime=detected.timestamp())],
        detected_at=detected,
        copies={
            CHECK: CopyRecord(
                endpoint=CHECK,
                source_endpoint=SOURCE,
                step=1,
                files=[copy],
                verified_at=detected,
                copied=True,
                bytes=copy.size,
                seconds=0.001,
            )
        },
        holds={
            SOURCE: HoldRecord(
                endpoint=SOURCE,
                check_endpoint=CHECK,
                placed_at=hold.placed_at,
                expires_at=hold.expires_at,
                state="pending",
                last_action=hold.action,
                files=[copy],
            )
        },
        history=[
            HistoryEntry(at=detected, what="detected", detail=f"1 file(s) on {SOURCE}"),
            HistoryEntry(at=detected, what=f"copy {CHECK}", detail=f"copied and verified, {copy.size} bytes"),
            HistoryEntry(at=hold.placed_at, what=f"hold {SOURCE}", detail=f"placed; expires {hold.expires_at}"),
        ],
        applied=[f"{scan.scan_id}:new", f"{scan.scan_id}:moved:{CHECK}", hold.msg_id()],
    )


@dataclass
class Placement:
    """When every hold expires, and what placing them took."""

    expiry: datetime | None = None
    ledger_s: float = 0.0
    holds_s: float = 0.0
    duplicates: int = 0


async def place(js: JetStreamContext, config: BeamflowConfig, scans: list[Scan]) -> Placement:
    """For every scan, ``WINDOW`` at a time: its ledger record (``Ledger.put``, a window's at once), then
    its hold as the mover places it (``holds.new_hold`` with the source's retention rule), published
    pipelined with ``publish_event``'s headers. Every hold is placed at one moment, so all expire at one."""
    rule = config.endpoints[SOURCE].retention
    assert rule is not None
    placed_at = utcnow()
    result = Placement()
    ledger = await Ledger.open(js)
    for start in range(0, len(scans), WINDOW):
        window = scans[start : start + WINDOW]
        placed = [holds.new_hold(config, s.scan_id, BEAMLINE, SOURCE, rule, [s.copy], now=placed_at) for s in window]
        result.expiry = result.expiry or placed[0].expires_at
        assert all(h.expires_at == result.expiry for h in placed)
        began = time.monotonic()
        await asyncio.gather(*(ledger.put(ledger_record(s, h, placed_at)) for s, h in zip(window, placed, strict=True)))
        published = time.monotonic()
        result.ledger_s += published - began
        futures = [
            await js.publish_async(h.subject(), h.to_json(), stream=h.stream, headers=event_headers(h)) for h in placed
        ]
        result.duplicates += sum(1 for ack in await asyncio.gather(*futures) if ack.duplicate)
        result.holds_s += time.monotonic() - published
        print(f"\r  {start + len(window)} ledger records and holds placed", end="", flush=True)
    print()
    return result


@dataclass
class Arrivals:
    """Messages of one subject filter as they are stored: the server's timestamp of each, and its body."""

    expected: int
    keep_data: bool = False
    stored: list[float] = field(default_factory=list)
    """When each message was stored (the server's clock, seconds since the epoch)."""
    data: list[bytes] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_msg(self, msg: Msg) -> None:
        self.stored.append(msg.metadata.timestamp.timestamp())
        if self.keep_data:
            self.data.append(msg.data)  # parsed after the run, so this process takes little CPU meanwhile
        if len(self.stored) >= self.expected:
            self.done.set()

    @property
    def count(self) -> int:
        return len(self.stored)


def proc_status(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def service_stats(log: Path) -> dict[str, Any]:
    """The counters the pruner logs as it stops (handled, retried, dead_lettered, published.pruned)."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "service stopped":
            keys = ("handled", "retried", "dead_lettered", "published.pruned")
            return {k: entry.get(k, 0) for k in keys}
    return {}


def verify_files(base: Path, scans: list[Scan]) -> dict[str, int]:
    """Source files left (must be 0) and data copies still there with their checksum (must be all)."""
    left = sum(1 for folder in (base / SOURCE).iterdir() for entry in os.scandir(folder) if entry.is_file())
    intact = 0
    for scan in scans:
        path = base / CHECK / scan.copy.path
        try:
            digest, size = file_checksum(path)
        except FileNotFoundError:
            continue
        intact += (digest, size) == (scan.copy.checksum, scan.copy.size)
    return {"source_files_left": left, "copies_intact": intact}


def bench_config(base: Path, args: argparse.Namespace) -> BeamflowConfig:
    production = DeliveryConfig()
    config = test_config(
        base,
        beamline=BEAMLINE,
        suffixes=(SUFFIX,),
        destinations=(CHECK,),
        retention={SOURCE: RetentionRule(keep_for=timedelta(seconds=args.lead), check_endpoint=CHECK)},
        concurrency=args.concurrency,
        max_deliver=production.max_deliver,
        ack_wait=production.ack_wait,
        backoff=list(production.backoff),
    )
    # Any free port for the embedded server: the default 4222 may be taken by another NATS on this host.
    return config.model_copy(update={"nats": config.nats.model_copy(update={"port": 0})})


@dataclass
class PrunerProcess:
    """One ``beamflow run pruner`` process, started exactly as production starts a service."""

    log_path: Path
    health_port: int
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid


async def start_pruner(yaml_path: Path, url: str, log_path: Path) -> PrunerProcess:
    port = free_port()
    command = [sys.executable, "-m", "beamflow.common.cli", "run", "pruner", "--config", str(yaml_path)]
    command += ["--nats", url, "--health-port", str(port)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=out, stderr=out, stdin=asyncio.subprocess.DEVNULL, start_new_session=True
        )
    return PrunerProcess(log_path, port, process)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def wait_ready(pruners: list[PrunerProcess], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for pruner in pruners:
        while not await asyncio.to_thread(ready, pruner.health_port):
            if pruner.process.returncode is not None or time.monotonic() > deadline:
                tail = pruner.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pruner {pruner.pid} not ready (exit code {pruner.process.returncode}):\n{tail}")
            await asyncio.sleep(0.1)  # polling another process's health endpoint


async def stop_pruner(pruner: PrunerProcess, grace: float) -> int | None:
    """SIGTERM (the pruner drains in-flight holds), SIGKILL only if it does not exit in time."""
    if pruner.process.returncode is None:
        pruner.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(pruner.process.wait(), grace)
        except TimeoutError:
            pruner.process.kill()
            await pruner.process.wait()
    return pruner.process.returncode


async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    began = time.monotonic()
    config = bench_config(base, args)
    yaml_path = config_to_yaml(config, base / "beamflow.yaml")

    server = EmbeddedNats(base / "nats", port=0)
    await server.start()
    assert server.pid is not None
    pruners: list[PrunerProcess] = []
    nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        await ensure_streams(js, config)
        print(f"NATS {server.url}; writing {args.holds} files of {args.size} B to {SOURCE}/ and {CHECK}/ ...")
        started = time.monotonic()
        scans = await asyncio.to_thread(write_files, base, args.holds, args.size)
        write_s = time.monotonic() - started
        print(f"  files: {2 * args.holds} written in {write_s:.1f} s")

        for i in range(args.replicas):
            pruners.append(await start_pruner(yaml_path, server.url, base / "logs" / f"pruner-{i}.log"))
        await wait_ready(pruners)
        print(
            f"pruner ready: {len(pruners)} process(es), pid {', '.join(str(p.pid) for p in pruners)}, "
            f"concurrency {config.delivery.concurrency}; logs in {base / 'logs'}"
        )

        expired = Arrivals(args.holds)
        pruned = Arrivals(args.holds, keep_data=True)
        failed = Arrivals(1)
        await js.subscribe(
            subjects.hold_filter(subjects.HOLD_EXPIRED),
            stream=subjects.HOLDS_STREAM,
            ordered_consumer=True,
            headers_only=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=expired.on_msg,
        )
        await js.subscribe(
            subjects.stage_filter(subjects.PRUNED),
            stream=subjects.SCANS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            cb=pruned.on_msg,
        )
        await js.subscribe(
            ">", stream=subjects.DEAD_LETTER_STREAM, ordered_consumer=True, headers_only=True, cb=failed.on_msg
        )

        # Every hold expires at the same moment E, --lead seconds from now, as the mover would place them.
        started = time.monotonic()
        placement = await place(js, config, scans)
        placing_s = time.monotonic() - started
        expiry = placement.expiry
        assert expiry is not None
        slack = expiry.timestamp() - time.time()
        print(
            f"  ledger records and holds placed in {placing_s:.1f} s (ledger writes {placement.ledger_s:.1f} s, "
            f"hold publishes {placement.holds_s:.1f} s); all expire at {expiry.isoformat()}, {slack:.1f} s from now"
        )
        if slack < 0:
            print("  WARNING: holds expired before every one was placed; raise --lead", file=sys.stderr)

        watched = {f"pruner-{i}": psutil.Process(p.pid) for i, p in enumerate(pruners)}
        watched["nats-server"] = psutil.Process(server.pid)
        await asyncio.sleep(max(0.0, slack - 0.5))
        cpu_before = {name: cpu_seconds(p) for name, p in watched.items()}
        rss_max = dict.fromkeys(watched, 0)
        last_count, last_change, last_print = 0, time.monotonic(), 0.0
        stalled = False
        while not pruned.done.is_set() and not failed.count:
            for name, proc in watched.items():
                with contextlib.suppress(psutil.Error):
                    rss_max[name] = max(rss_max[name], proc.memory_info().rss)
            now = time.monotonic()
            if pruned.count != last_count:
                last_count, last_change = pruned.count, now
            elif now - last_change > args.stall:
                stalled = True
                break
            if now - last_print >= 2.0:
                last_print = now
                print(
                    f"\r  expired {expired.count}/{args.holds}, pruned {pruned.count}/{args.holds}",
                    end="",
                    flush=True,
                )
            await asyncio.sleep(0.25)  # sampling the pruner's memory, not waiting for an outcome
        print(f"\r  expired {expired.count}/{args.holds}, pruned {pruned.count}/{args.holds}")
        await asyncio.sleep(1.0)  # a late dead letter or duplicate would still be counted
        cpu = {name: round(cpu_seconds(p) - cpu_before[name], 1) for name, p in watched.items()}
        peaks = [proc_status(p.pid)["VmHWM"] for p in pruners]
        consumer = await js.consumer_info(subjects.HOLDS_STREAM, "pruner-hold-expired")
        dead_letters = (await js.stream_info(subjects.DEAD_LETTER_STREAM)).state.messages
    finally:
        await nc.close()
        exits = [await stop_pruner(p, config.delivery.drain_timeout.total_seconds() + 5) for p in pruners]
        server.stop()
    stats = [service_stats(p.log_path) for p in pruners]
    print("verifying every source file and every copy ...")
    files_check = verify_files(base, scans)

    pruned_events = [json.loads(data) for data in pruned.data]
    files = sum(len(e["files"]) for e in pruned_events)
    distinct = len({e["scan_id"] for e in pruned_events})
    stored = pruned.stored
    fired = expired.stored
    e_ts = expiry.timestamp()
    span = max(stored) - min(stored) if len(stored) > 1 else float("nan")
    from_expiry = max(stored) - e_ts if stored else float("nan")
    rate = files / span if span > 0 else 0.0
    peak = max(peaks)
    complete = distinct == args.holds and files == args.holds
    return {
        "benchmark": "prune",
        "holds": args.holds,
        "file_size_bytes": args.size,
        "pruner_processes": args.replicas,
        "concurrency": config.delivery.concurrency,
        "lead_s": args.lead,
        "setup_seconds": {
            "files": round(write_s, 1),
            "ledger_and_holds": round(placing_s, 1),
            "of_which_ledger_writes": round(placement.ledger_s, 1),
            "of_which_hold_publishes": round(placement.holds_s, 1),
        },
        "slack_before_expiry_s": round(slack, 2),
        "holds_placed_before_expiry": slack > 0,
        "hold_publish_duplicates": placement.duplicates,
        "expired_fired": len(fired),
        "scheduler_fired_s_after_expiry": {
            "first": round(min(fired) - e_ts, 3) if fired else None,
            "last": round(max(fired) - e_ts, 3) if fired else None,
        },
        "pruned_events": len(pruned_events),
        "pruned_distinct_scans": distinct,
        "files_pruned": files,
        "freed_bytes": sum(e["freed_bytes"] for e in pruned_events),
        "seconds_first_to_last_pruned": round(span, 3),
        "seconds_expiry_to_last_pruned": round(from_expiry, 3),
        "files_per_s": round(rate, 1),
        "files_per_s_from_expiry": round(files / from_expiry, 1) if from_expiry > 0 else 0.0,
        "peak_rss_bytes": peak,
        "peak_rss_mb": round(peak / MB, 1),
        "peak_rss_mb_per_process": [round(p / MB, 1) for p in peaks],
        "sampled_rss_max_mb": {name: round(v / MB, 1) for name, v in rss_max.items()},
        "cpu_seconds_during_prune": cpu,
        "pruner_stats": stats,
        "pruner_exit_codes": exits,
        "consumer": {
            "redelivered": consumer.num_redelivered,
            "ack_pending": consumer.num_ack_pending,
            "pending": consumer.num_pending,
        },
        "dead_letters": dead_letters,
        "stalled": stalled,
        **files_check,
        "total_seconds": round(time.monotonic() - began, 1),
        "targets": {"files_per_s_min": TARGET_RATE, "peak_rss_mb_max": TARGET_MB},
        "pass": {
            "files_per_s": complete and rate >= TARGET_RATE,
            "peak_rss": peak / MB < TARGET_MB,
            "source_pruned": files_check["source_files_left"] == 0 and complete,
            "copies_intact": files_check["copies_intact"] == args.holds,
            "no_dead_letters": dead_letters == 0,
        },
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(r: dict[str, Any]) -> None:
    ok, setup = r["pass"], r["setup_seconds"]
    fired = r["scheduler_fired_s_after_expiry"]
    procs = r["pruner_processes"]
    print()
    print(
        f"prune: {r['holds']} holds on files of {r['file_size_bytes']} B expiring together; "
        f"{procs} pruner process{'es' if procs > 1 else ''}, concurrency {r['concurrency']} each"
    )
    print(
        f"  setup: files {setup['files']} s, ledger records and holds {setup['ledger_and_holds']} s; "
        f"{r['slack_before_expiry_s']} s to spare before the expiry"
    )
    print(
        f"  the scheduler fired {r['expired_fired']} expiries {fired['first']} s to {fired['last']} s after it; "
        f"consumer at the end {r['consumer']}"
    )
    print(f"  pruner stats {r['pruner_stats']}, exit codes {r['pruner_exit_codes']}")
    print(
        "  CPU seconds during the prune: "
        + ", ".join(f"{k} {v}" for k, v in r["cpu_seconds_during_prune"].items())
        + "; sampled RSS max (MB): "
        + ", ".join(f"{k} {v}" for k, v in r["sampled_rss_max_mb"].items())
    )
    print(f"  total time {r['total_seconds']} s")
    print()
    print(
        f"throughput: {r['files_per_s']:.0f} files/s over {r['seconds_first_to_last_pruned']:.1f} s, first to last "
        f"scan.pruned (target >= {TARGET_RATE:.0f}) {verdict(ok['files_per_s'])}; "
        f"{r['files_per_s_from_expiry']:.0f} files/s counted from the expiry "
        f"({r['seconds_expiry_to_last_pruned']:.1f} s)"
    )
    print(
        f"pruner peak memory: VmHWM {r['peak_rss_mb']:.1f} MB (target < {TARGET_MB:.0f} MB) {verdict(ok['peak_rss'])}"
    )
    print(
        f"correctness: {r['files_pruned']} files pruned of {r['holds']}, source files left {r['source_files_left']} "
        f"{verdict(ok['source_pruned'])}; copies intact {r['copies_intact']}/{r['holds']} "
        f"{verdict(ok['copies_intact'])}; dead letters {r['dead_letters']} {verdict(ok['no_dead_letters'])}"
    )


def main() -> int:
    parser = harness.parser(
        "prune",
        __doc__ or "",
        epilog="Targets: >= 1,000 files/s; pruner peak RSS < 200 MB.",
    )
    parser.add_argument("--holds", type=int, default=100_000, help="holds (one 1-file scan each; default 100000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per file (default 1024, at least 8)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DeliveryConfig().concurrency,
        help="the pruner's delivery.concurrency (default: the production default)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="pruner processes sharing the durable consumer, as production scales a service (default 1)",
    )
    parser.add_argument(
        "--lead", type=float, default=None, help="seconds from placing the holds to their expiry (default: by --holds)"
    )
    parser.add_argument("--stall", type=float, default=60.0, help="give up after this long without a prune (s)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (logs, data) afterwards")
    args = parser.parse_args()
    if args.size < 8:
        parser.error("--size must be at least 8 bytes (each file starts with its distinct index)")
    if args.lead is None:
        # Records and holds are placed at 3,000-4,500 scans/s here; a margin for a busier machine.
        args.lead = 5.0 + args.holds / 2000

    with harness.scratch("prune", keep=args.keep) as base:
        try:
            results = asyncio.run(run(args, base))
        except BaseException:
            for log in sorted((base / "logs").glob("*.log")):
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- {log.name} (last lines)", *tail, sep="\n", file=sys.stderr)
            raise
    harness.save(results, args.output)
    report(results)
    return 1 if args.strict and not all(results["pass"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
