"""Faults with real processes: SIGKILL and SIGTERM of a mover process, full and read-only disks,
deliveries running out without an answer, health, and one trace across services."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
import pytest
from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import ScanFile, ScanNew, scan_id_for
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import collecting
from beamflow.common.service import Service
from beamflow.common.testing import config_to_yaml, harness, running, test_config, wait_until
from beamflow.mover.service import build as build_mover
from beamflow.watcher.service import build as build_watcher
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def big_file(path: Path, mib: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        for i in range(mib):
            handle.write(block[:-8] + i.to_bytes(8, "little"))
    return path


def announce(base: Path, rel: str) -> ScanNew:
    st = (base / "source" / rel).stat()
    scan_path = rel.rsplit(".", 1)[0]
    return ScanNew(
        scan_id=scan_id_for("bl832", "source", scan_path),
        beamline="bl832",
        endpoint="source",
        scan_path=scan_path,
        files=[ScanFile(path=rel, size=st.st_size, mtime=st.st_mtime)],
        detected_at=datetime.now(UTC),
    )


def start_mover(config_path: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "beamflow.common.cli",
            "run",
            "mover",
            "--config",
            str(config_path),
            "--nats",
            url,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def temps(folder: Path) -> list[Path]:
    return list(folder.rglob("*.part"))


async def test_mover_killed_mid_copy_completes_once_after_restart(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, ack_wait=timedelta(seconds=2))
    path = config_to_yaml(config, tmp_path / "beamflow.yaml")
    source = big_file(tmp_path / "source/big.h5", 400)
    mover = start_mover(path, nats_server.url, tmp_path / "mover.log")
    try:
        async with (
            running(Service("p"), config, nats_server.url) as bus,
            collecting(nats_server.url) as events,
        ):
            await bus.publish(announce(tmp_path, "big.h5"))
            await wait_until(lambda: any(p.stat().st_size > 0 for p in temps(tmp_path / "data")))
            mover.send_signal(signal.SIGKILL)
            mover.wait()
            assert not (tmp_path / "data/big.h5").exists()  # nothing under the final name
            assert temps(tmp_path / "data")  # the killed copy's temp file is still there
            mover = start_mover(path, nats_server.url, tmp_path / "mover.log")
            await events.wait_for(lambda c: len(c.moved) == 1, timeout=60)
            await bus.publish(announce(tmp_path, "big.h5"))  # a late duplicate announcement is absorbed
            info = await bus.js.consumer_info(subjects.SCANS_STREAM, "mover-scan-new")
        stream = await bus_stream_count(nats_server.url, "scan.moved.bl832")
    finally:
        mover.terminate()
        mover.wait(30)
    assert stream == 1  # exactly one scan.moved stored for the scan
    assert info.delivered.consumer_seq == 2 and info.delivered.stream_seq == 1  # one message, delivered twice
    assert (tmp_path / "data/big.h5").read_bytes() == source.read_bytes()
    assert temps(tmp_path / "data") == []


async def bus_stream_count(url: str, subject: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(subjects.SCANS_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def test_sigterm_finishes_the_copy_in_flight_then_exits(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    path = config_to_yaml(config, tmp_path / "beamflow.yaml")
    big_file(tmp_path / "source/big.h5", 300)
    mover = start_mover(path, nats_server.url, tmp_path / "mover.log")
    async with running(Service("p"), config, nats_server.url) as bus, collecting(nats_server.url) as events:
        await bus.publish(announce(tmp_path, "big.h5"))
        await wait_until(lambda: any(p.stat().st_size > 0 for p in temps(tmp_path / "data")))
        mover.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(mover.wait, 60)
        assert code == 0
        await events.wait_for(lambda c: len(c.moved) == 1, timeout=5)
        info = await bus.js.consumer_info(subjects.SCANS_STREAM, "mover-scan-new")
    assert info.num_ack_pending == 0 and info.num_pending == 0 and info.num_redelivered == 0
    assert (tmp_path / "data/big.h5").stat().st_size == 300 * 1024 * 1024


@contextmanager
def small_disk(where: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize(
    ("read_only", "expect"),
    [(False, "No space left"), (True, "Read-only file system")],
    ids=["disk-full", "read-only"],
)
async def test_a_destination_refusing_writes_is_retried_then_dead_lettered(
    tmp_path: Path, nats_server: EmbeddedNats, read_only: bool, expect: str
) -> None:
    config = test_config(tmp_path, max_deliver=3)
    source = big_file(tmp_path / "source/big.h5", 4)
    before = source.read_bytes()
    with small_disk(tmp_path / "data", "1m", read_only):
        async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
            await bus.publish(announce(tmp_path, "big.h5"))
            await events.wait_for(lambda c: len(c.failed) == 1)
        assert not (tmp_path / "data/big.h5").exists()
        assert temps(tmp_path / "data") == []
    failure = events.failed[0]
    assert failure.error_type == "DestinationUnwritable" and not failure.permanent
    assert failure.deliveries == 3 and expect in failure.reason
    assert source.read_bytes() == before
    assert not events.moved


async def test_deliveries_running_out_without_an_answer_become_a_dead_letter(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path, max_deliver=2, ack_wait=timedelta(milliseconds=300))
    (tmp_path / "source/a.h5").write_bytes(b"a")
    async with running(build_mover(config), config, nats_server.url):
        pass  # provisions the streams and the mover's consumers, then stops: nobody is consuming now
    async with running(Service("p"), config, nats_server.url) as bus:
        event = announce(tmp_path, "a.h5")
        await bus.publish(event)
        # A mover instance that takes the message and dies without answering, twice.
        sub = await bus.js.pull_subscribe_bind(durable="mover-scan-new", stream=subjects.SCANS_STREAM)
        for _ in range(2):
            await sub.fetch(1, timeout=5)
        # The server notices the exhausted message on the next pull after the last ack_wait lapsed.
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await sub.fetch(1, timeout=1)
        advisories = await bus.js.pull_subscribe_bind(
            durable="mover-scan-new-maxdeliver", stream=subjects.ADVISORY_STREAM
        )
        info = await bus.js.stream_info(subjects.ADVISORY_STREAM)
        deadline = time.monotonic() + 10
        while info.state.messages == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the server emits the advisory when the last ack_wait lapses
            info = await bus.js.stream_info(subjects.ADVISORY_STREAM)
        assert info.state.messages == 1  # captured while no mover was running
        await advisories.unsubscribe()
        await sub.unsubscribe()
    async with running(build_mover(config), config, nats_server.url), collecting(nats_server.url) as events:
        await events.wait_for(lambda c: len(c.failed) == 1)
    failure = events.failed[0]
    assert failure.error_type == "MaxDeliveriesExceeded" and failure.deliveries == 2
    assert failure.scan_id == event.scan_id
    assert json.loads(failure.original.data)["scan_id"] == event.scan_id
    assert failure.original.subject == "scan.new.bl832" and failure.original.stream == subjects.SCANS_STREAM


def get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_health_endpoint_reports_ready_while_connected(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    async with running(build_mover(config), config, nats_server.url, health_port=0) as runtime:
        port = runtime.health_port
        alive = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/healthz")
        ready = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
        nats_server.stop()
        await wait_until(lambda: not runtime.nc.is_connected)
        not_ready = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/readyz")
        await nats_server.start()
    assert alive[0] == 200 and alive[1]["service"] == "mover"
    assert ready[0] == 200 and ready[1]["connected"] is True
    assert not_ready[0] == 503 and not_ready[1]["connected"] is False


async def test_one_trace_from_the_watcher_through_the_mover(
    tmp_path: Path, nats_server: EmbeddedNats, spans: InMemorySpanExporter
) -> None:
    config: BeamflowConfig = test_config(tmp_path, destinations=("data", "archive"))
    async with (
        running(build_watcher(config), config, nats_server.url),
        running(build_mover(config), config, nats_server.url),
        collecting(nats_server.url) as events,
    ):
        await wait_until(lambda: (tmp_path / "state/watcher/bl832").exists())
        (tmp_path / "source/traced.h5").write_bytes(b"t" * 10)
        await events.wait_for(lambda c: len(c.moved) == 2)
    scan_id = events.moved[0].scan_id
    mine = [s for s in spans.get_finished_spans() if (s.attributes or {}).get("beamflow.scan_id") == scan_id]
    names = {s.name for s in mine}
    assert {"watcher announce", "mover scan-new"} <= names
    assert len({s.context.trace_id for s in mine}) == 1
    handle = next(s for s in mine if s.name == "mover scan-new")
    announce_span = next(s for s in mine if s.name == "watcher announce")
    assert handle.parent is not None and handle.parent.span_id == announce_span.context.span_id
