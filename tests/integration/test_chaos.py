"""Chaos: 500 scans through watcher -> mover -> pruner while the services are SIGKILLed and NATS restarts.

Real processes throughout: the embedded nats-server and one ``beamflow run <service>`` process each for the
watcher, mover, ledger and pruner. While the test writes 500 scan files at a steady pace, a chaos task kills
the mover and the pruner (and now and then the ledger) with SIGKILL at random moments and restarts them, and
restarts the NATS server once (same port, same data folder). Every scan must end copied, verified and pruned
exactly once: none lost, no duplicate copy in the ledger, no source deleted unless its verified copy was
there at that moment.

The chaos is driven by a seeded ``random.Random``; the seed is printed, and ``BEAMFLOW_CHAOS_SEED=<seed>``
replays the same schedule of kills and the same files (process timing still varies from run to run).

Timings, chosen for what they exercise rather than tuned to pass:

- ``ack_wait`` 3 s: a message held by a killed process is redelivered 3 s later; a live handler heartbeats
  every second, so no message is redelivered under a process that is still working on it.
- ``keep_for`` 10 s: longer than ``ack_wait`` plus a restart (~2 s), so a mover killed after its copy but
  before its ack has the message redelivered, re-verifies the copy (``copied=False``) and re-places the hold
  (absorbed by its message id) while the source is still there, rather than racing the prune of the same
  scan. A redelivery that comes after the prune anyway (a longer outage) takes the copy from the ledger.
- ``max_deliver`` 10: a message can be caught by several kills in a row and still be retried; one kill
  every few seconds cannot exhaust ten deliveries of one message, so a dead letter here is a real bug.
- The mover and the pruner are each killed every 0.5-2 s (plus the restart), the ledger every 6-12 s, each
  soon after the server shows it holding unacknowledged messages (or idle if none come within 3 s). After
  each kill the test asks the server how many messages the dead process left unacknowledged: those are
  what the redelivery has to finish, and at least three kills of each must have left some.
- One fault at a time: a kill never lands inside the NATS restart, so "every service reconnects by itself"
  is measured on processes that were running when the server went away.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from beamflow.common import subjects
from beamflow.common.checksums import file_checksum, new_hasher
from beamflow.common.endpoints import RetentionRule
from beamflow.common.events import scan_id_for
from beamflow.common.ledger import Ledger, ScanRecord
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.observe import EventCollector, collecting
from beamflow.common.testing import config_to_yaml, test_config
from beamflow.common.transfer_fs import TEMP_SUFFIX

SCANS = 500
WRITE_SECONDS = 30.0
FOLDERS = ("2026/run_a", "2026/run_b", "2026/run_c", "2026/run_d", "2026/run_e")
ACK_WAIT = timedelta(seconds=3)
KEEP_FOR = timedelta(seconds=10)
MAX_DELIVER = 10
DEADLINE = 240.0
#: The chaos stops once this many scans are pruned, so the last few show the system settling by itself.
CHAOS_UNTIL_PRUNED = SCANS - 25
SERVICES = ("ledger", "mover", "pruner", "watcher")


@dataclass
class ServiceProcess:
    """One ``beamflow run <name>`` process, killed and restarted by the chaos."""

    name: str
    config_path: Path
    url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    health_port: int = 0
    kills: int = 0
    kills_with_work: int = 0
    orphaned: int = 0  # messages the killed processes held unacknowledged: each must be redelivered

    def start(self) -> None:
        self.health_port = free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "beamflow.common.cli",
                    "run",
                    self.name,
                    "--config",
                    str(self.config_path),
                    "--nats",
                    self.url,
                    "--health-port",
                    str(self.health_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def record_kill(self, orphaned: int) -> None:
        self.kills += 1
        self.kills_with_work += orphaned > 0
        self.orphaned += orphaned

    def terminate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def exited(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until /readyz says the service is connected to NATS and consuming."""
        await self._wait(lambda status, _: status == 200, "ready", timeout)

    async def wait_working(self, timeout: float = 30.0) -> None:
        """Until the service has handled (or, the watcher, published) something it had not handled before."""
        start = await _health(self.health_port)
        before = _work(start[1]) if start else 0
        await self._wait(lambda status, body: status == 200 and _work(body) > before, "working again", timeout)

    async def _wait(self, done: Callable[[int, dict[str, Any]], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ((answer := await _health(self.health_port)) and done(*answer)):
            code = self.exited()
            if code is not None:
                raise AssertionError(f"{self.name} exited with {code}; log:\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not {what} within {timeout}s; log:\n{tail(self.log_path)}")
            await asyncio.sleep(0.05)  # polling another process's health endpoint


def _work(body: dict[str, Any]) -> int:
    stats = body.get("stats", {})
    return int(stats.get("handled", 0)) + int(stats.get("published.new", 0))


async def _health(port: int) -> tuple[int, dict[str, Any]] | None:
    """Status code and body of the service's /readyz (the body carries its counters), or None if no answer."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 2)  # the server closes the connection after answering
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)
    except (OSError, TimeoutError, ValueError, IndexError):
        return None
    finally:
        writer.close()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Scan:
    scan_id: str
    rel: str
    checksum: str
    size: int


@dataclass
class World:
    """What the test knows independently of beamflow: the files it wrote and what it saw happen to them."""

    base: Path
    scans: dict[str, Scan] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # scan ids whose source the monitor saw disappear
    checked_pruned: int = 0  # scan.pruned events already checked against the disk
    violations: list[str] = field(default_factory=list)
    writing_done: bool = False
    half_written: asyncio.Event = field(default_factory=asyncio.Event)

    def copy_ok(self, scan: Scan) -> bool:
        copy = self.base / "data" / scan.rel
        try:
            return file_checksum(copy) == (scan.checksum, scan.size)
        except OSError:
            return False

    def check_gone(self, scan: Scan, when: str) -> None:
        """The oracle for deletion: a source may be gone only while its verified copy is in place."""
        if (self.base / "source" / scan.rel).exists():
            return
        self.gone.add(scan.scan_id)
        if not self.copy_ok(scan):
            self.violations.append(f"{when}: source of {scan.scan_id} ({scan.rel}) gone without a good copy on data")


def checksum_of(data: bytes) -> str:
    hasher = new_hasher()
    hasher.update(data)
    return hasher.hexdigest()


async def write_scans(world: World, rng: random.Random) -> None:
    """SCANS files at a steady pace; each one's checksum is recorded before it is written."""
    source = world.base / "source"
    started = time.monotonic()
    for i in range(SCANS):
        folder = FOLDERS[i % len(FOLDERS)]
        rel = f"{folder}/scan_{i:05d}.h5"
        data = rng.randbytes(rng.randint(1_000, 64_000))
        scan = Scan(scan_id_for("bl832", "source", rel[: -len(".h5")]), rel, checksum_of(data), len(data))
        world.scans[scan.scan_id] = scan
        (source / rel).write_bytes(data)
        if i + 1 == SCANS // 2:
            world.half_written.set()
        due = started + (i + 1) * WRITE_SECONDS / SCANS
        await asyncio.sleep(max(0.0, due - time.monotonic()))  # the detector's pace, not a synchronisation
    world.writing_done = True


async def monitor_sources(world: World) -> None:
    """Look every 100 ms for sources that disappeared, and check their copies right then."""
    while True:
        for scan in list(world.scans.values()):
            if scan.scan_id not in world.gone:
                world.check_gone(scan, "monitor")
        await asyncio.sleep(0.1)  # a sampling interval, not a synchronisation


def distinct(events: list[Any]) -> set[str]:
    """The scan ids of ``events``."""
    return {e.scan_id for e in events}


async def consumers_busy(js: nats.js.JetStreamContext) -> list[str]:
    """Every durable consumer that still has messages to deliver or awaiting an ack."""
    busy = []
    for stream in (subjects.SCANS_STREAM, subjects.HOLDS_STREAM, subjects.ADVISORY_STREAM):
        for info in await js.consumers_info(stream):
            if info.num_pending or info.num_ack_pending:
                busy.append(f"{stream}/{info.name}: pending {info.num_pending}, ack pending {info.num_ack_pending}")
    return busy


async def until_done(outcome: Awaitable[None], helpers: list[asyncio.Task[None]]) -> None:
    """Await ``outcome``, failing at once if one of the helper tasks (writer, chaos, monitor) fails first."""
    main = asyncio.ensure_future(outcome)
    watched: set[asyncio.Future[None]] = {main, *helpers}
    try:
        while not main.done():
            done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not main and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        main.result()
    finally:
        main.cancel()


async def wait_for_none(outstanding: Callable[[], Awaitable[list[str]]], what: str, deadline: float) -> None:
    """Wait until ``outstanding()`` lists nothing: state held by other processes (the ledger bucket, consumers)."""
    while left := await outstanding():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met before the deadline; still: {left}")
        await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_chaos(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    seed = int(os.environ.get("BEAMFLOW_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nchaos seed {seed} (replay: BEAMFLOW_CHAOS_SEED={seed}); service logs in {tmp_path / 'logs'}")
    data_rng = random.Random(f"{seed}-data")
    began = time.monotonic()
    deadline = began + DEADLINE

    config = test_config(
        tmp_path,
        retention={"source": RetentionRule(keep_for=KEEP_FOR, check_endpoint="data")},
        ack_wait=ACK_WAIT,
        max_deliver=MAX_DELIVER,
        backoff=[timedelta(milliseconds=ms) for ms in (200, 500, 1000, 2000)],
        drain_timeout=timedelta(seconds=5),
    )
    config_path = config_to_yaml(config, tmp_path / "beamflow.yaml")
    for folder in FOLDERS:  # created before the watcher starts, as a beamline's run folders would be
        (tmp_path / "source" / folder).mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    procs = {
        name: ServiceProcess(name, config_path, nats_server.url, tmp_path / "logs" / f"{name}.log") for name in SERVICES
    }
    world = World(tmp_path)
    nats_restarts = 0
    reconnect_seconds = 0.0
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    tasks: list[asyncio.Task[None]] = []
    try:
        for proc in procs.values():
            proc.start()
        for proc in procs.values():
            await proc.wait_ready(60)
        async with collecting(nats_server.url) as events:
            chaos_lock = asyncio.Lock()  # one fault at a time: a kill never lands inside the NATS restart

            def chaos_over() -> bool:
                return len(distinct(events.pruned)) >= CHAOS_UNTIL_PRUNED

            async def in_flight(name: str) -> int:
                """Messages delivered to the service and not yet acknowledged (0 if the bus cannot say)."""
                total = 0
                for stream in (subjects.SCANS_STREAM, subjects.HOLDS_STREAM):
                    try:
                        infos = await asyncio.wait_for(js.consumers_info(stream), 1)
                    except (nats.errors.Error, TimeoutError):
                        return 0
                    total += sum(i.num_ack_pending for i in infos if (i.name or "").startswith(f"{name}-"))
                return total

            async def kill_loop(
                name: str, spacing: tuple[float, float], within: float, rng: random.Random, first: str = "new"
            ) -> None:
                """Kill ``name`` every ``spacing`` seconds, up to ``within`` seconds after it took messages,
                from the first ``scan.<first>`` on (before it the service has nothing to do)."""
                proc = procs[name]
                await events.wait_for(lambda c: any(e.stage == first for e in c.events), timeout=60)
                while not chaos_over():
                    await asyncio.sleep(rng.uniform(*spacing))  # spacing the kills, not waiting for an outcome
                    async with chaos_lock:
                        if chaos_over():
                            return
                        # Kill at a random moment soon after the service has taken messages it has not answered
                        # yet; if none come within a few seconds, it is killed idle (production sees that too).
                        give_up = time.monotonic() + 3
                        while await in_flight(name) == 0 and time.monotonic() < give_up:  # noqa: ASYNC110
                            await asyncio.sleep(0.005)  # polling the server's view of another process
                        await asyncio.sleep(rng.uniform(0.0, within))  # anywhere inside the handling
                        proc.kill()
                        work = await in_flight(name)  # what the dead process left unacknowledged
                        proc.record_kill(work)
                        print(f"  {time.monotonic() - began:6.1f}s SIGKILL {name} holding {work} unacked message(s)")
                        await asyncio.sleep(rng.uniform(0.0, 1.0))  # down for a while
                        proc.start()
                    await proc.wait_ready(60)

            async def restart_nats(rng: random.Random) -> None:
                nonlocal nats_restarts, reconnect_seconds
                await world.half_written.wait()
                async with chaos_lock:
                    await asyncio.to_thread(nats_server.stop)
                    stopped = time.monotonic()
                    await asyncio.sleep(rng.uniform(1.0, 3.0))  # NATS stays down a while; the watcher spools
                    await nats_server.start()
                    nats_restarts += 1
                    back = time.monotonic()
                    for proc in procs.values():  # every service reconnects by itself ...
                        await proc.wait_ready(30)
                    reconnect_seconds = time.monotonic() - back
                    for proc in procs.values():  # ... and goes on working, not only connected
                        await proc.wait_working(30)
                    working_seconds = time.monotonic() - back
                    print(
                        f"  {stopped - began:6.1f}s NATS stopped for {back - stopped:.1f}s; every service ready "
                        f"again {reconnect_seconds:.1f}s and working {working_seconds:.1f}s after it was back"
                    )

            def progress(c: EventCollector) -> bool:
                """Checked on every event as it arrives: each scan.pruned against the disk, dead letters."""
                for pruned in c.pruned[world.checked_pruned :]:
                    scan = world.scans.get(pruned.scan_id)
                    if scan is None:
                        world.violations.append(f"scan.pruned for a scan the test never wrote: {pruned.scan_id}")
                        continue
                    if (tmp_path / "source" / scan.rel).exists():
                        world.violations.append(f"scan.pruned for {scan.scan_id} but its source is still there")
                    world.check_gone(scan, "at scan.pruned")
                world.checked_pruned = len(c.pruned)
                if c.failed:
                    raise AssertionError("dead letters: " + "; ".join(f"{f.service}: {f.reason}" for f in c.failed))
                if world.violations:
                    raise AssertionError("unsafe deletion: " + "; ".join(world.violations))
                return world.writing_done and len(distinct(c.pruned)) == SCANS

            tasks = [
                asyncio.create_task(write_scans(world, data_rng)),
                asyncio.create_task(monitor_sources(world)),
                # ``within``: how long after the service took messages the kill may come. A copy of these
                # small files takes a few milliseconds, so the mover dies as soon as it is seen holding one;
                # the pruner takes a second's burst of expired holds at once and works through it in milliseconds
                # (small holds are handled on its event loop), so it too dies as soon as it is seen holding some:
                # a later kill missed the work on a loaded machine.
                asyncio.create_task(kill_loop("mover", (0.5, 2.0), 0.0, random.Random(f"{seed}-mover"))),
                asyncio.create_task(kill_loop("pruner", (0.5, 2.0), 0.0, random.Random(f"{seed}-pruner"), "pruned")),
                asyncio.create_task(kill_loop("ledger", (6.0, 12.0), 0.02, random.Random(f"{seed}-ledger"))),
                asyncio.create_task(restart_nats(random.Random(f"{seed}-nats"))),
            ]
            await until_done(events.wait_for(progress, timeout=deadline - time.monotonic()), tasks)
            await asyncio.gather(*tasks[2:])  # the chaos ends by itself once nearly every scan is pruned
            pruned_at = time.monotonic() - began

            # Settled: every record in the ledger shows the prune, and no consumer holds anything back.
            ledger = await Ledger.open(js)
            records: dict[str, ScanRecord | None] = {}

            async def unfinished() -> list[str]:
                for scan_id in world.scans:
                    record = records.get(scan_id)
                    if record is None or "source" not in record.prunes:
                        records[scan_id] = await ledger.get(scan_id)
                return [s for s, r in records.items() if r is None or "source" not in r.prunes][:5]

            await wait_for_none(unfinished, "every ledger record shows the prune", deadline)
            await wait_for_none(lambda: consumers_busy(js), "every consumer idle", deadline)
            settled_at = time.monotonic() - began
            live_failed = list(events.failed)

        # Count from the streams themselves, read afresh from the first message.
        scans_info = await js.stream_info(subjects.SCANS_STREAM)
        dead_info = await js.stream_info(subjects.DEAD_LETTER_STREAM)
        async with collecting(nats_server.url) as stored:
            await stored.wait_for(
                lambda c: len(c.events) >= scans_info.state.messages + dead_info.state.messages, timeout=30
            )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(asyncio.to_thread(proc.terminate) for proc in procs.values()))
        await nc.close()

    wall = time.monotonic() - began
    new_per_scan = Counter(e.scan_id for e in stored.new)
    moved_per_scan = Counter(e.scan_id for e in stored.moved if e.destination_endpoint == "data")
    pruned_per_scan = Counter(e.scan_id for e in stored.pruned)
    verified = {
        e.scan_id
        for e in stored.moved
        if e.destination_endpoint == "data"
        and e.scan_id in world.scans
        and [(f.checksum, f.size) for f in e.files] == [(world.scans[e.scan_id].checksum, world.scans[e.scan_id].size)]
    }
    for scan in world.scans.values():
        world.check_gone(scan, "at the end")
    sources_left = [s.rel for s in world.scans.values() if (tmp_path / "source" / s.rel).exists()]
    bad_copies = [s.rel for s in world.scans.values() if not world.copy_ok(s)]
    partial = [p.name for p in (tmp_path / "data").rglob(f"*{TEMP_SUFFIX}")]  # a killed copy's temp file
    ledger_problems = []
    for scan_id, record in records.items():
        assert record is not None
        copy_entries = [h for h in record.history if h.what == "copy data"]
        if set(record.copies) != {"data"} or len(copy_entries) != 1 or "source" not in record.prunes:
            ledger_problems.append(
                f"{scan_id}: copies {sorted(record.copies)}, {len(copy_entries)} copy entries, "
                f"prunes {sorted(record.prunes)}"
            )
        elif record.copies["data"].files[0].checksum != world.scans[scan_id].checksum:
            ledger_problems.append(f"{scan_id}: the ledger's checksum differs from the file written")

    print(
        f"scans written                 {len(world.scans)}\n"
        f"scan.new stored               {len(new_per_scan)} scans, max {max(new_per_scan.values(), default=0)} each\n"
        f"verified scan.moved to data   {len(verified)} scans, max {max(moved_per_scan.values(), default=0)} each\n"
        f"distinct scans pruned         {len(pruned_per_scan)}, max {max(pruned_per_scan.values(), default=0)} "
        "scan.pruned per scan\n"
        f"sources left / bad copies     {len(sources_left)} / {len(bad_copies)} "
        f"({len(partial)} partial copies left)\n"
        f"ledger records                {len(records)}, problems {len(ledger_problems)}\n"
        f"unsafe deletions              {len(world.violations)}\n"
        f"dead letters                  {len(stored.failed)}\n"
        + "".join(f"  dead letter: {f.service} {f.error_type}: {f.reason}\n" for f in stored.failed)
        + "".join(
            f"SIGKILLs of the {p.name:<11} {p.kills} ({p.kills_with_work} while it held unacked messages, "
            f"{p.orphaned} in all)\n"
            for p in procs.values()
            if p.name != "watcher"
        )
        + f"NATS restarts                 {nats_restarts} (every service connected again {reconnect_seconds:.1f}s "
        f"after it was back)\n"
        f"all pruned at {pruned_at:.1f}s, settled at {settled_at:.1f}s, wall {wall:.1f}s"
    )
    assert not live_failed
    assert len(world.scans) == SCANS
    assert len(new_per_scan) == SCANS
    assert len(verified) == SCANS
    assert max(moved_per_scan.values()) == 1, "a scan.moved to data was stored twice"
    assert len(pruned_per_scan) == SCANS
    assert max(pruned_per_scan.values()) == 1, [s for s, n in pruned_per_scan.items() if n > 1]
    assert sources_left == []
    assert bad_copies == []
    assert partial == []
    assert ledger_problems == []
    assert world.violations == []
    assert stored.failed == []
    assert nats_restarts == 1
    assert procs["mover"].kills_with_work >= 3 and procs["pruner"].kills_with_work >= 3
