"""The mover against a real nats-server: verified copies, idempotence, and every kind of bad input."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from beamflow.common import headers as hdr
from beamflow.common.checksums import ALGORITHM, file_checksum
from beamflow.common.events import ScanFile, ScanNew, scan_id_for
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import collecting
from beamflow.common.service import Service
from beamflow.common.testing import harness, running, test_config
from beamflow.mover.service import build as build_mover


def announce(root: Path, beamline: str, rel_files: list[str], scan_path: str | None = None) -> ScanNew:
    files = []
    for rel in rel_files:
        try:
            st = os.stat(root / rel, follow_symlinks=False)
            files.append(ScanFile(path=rel, size=st.st_size, mtime=st.st_mtime))
        except OSError:
            files.append(ScanFile(path=rel, size=0, mtime=0.0))
    scan_path = scan_path or rel_files[0].rsplit(".", 1)[0]
    return ScanNew(
        scan_id=scan_id_for(beamline, "source", scan_path),
        beamline=beamline,
        endpoint="source",
        scan_path=scan_path,
        files=files,
        detected_at=datetime.now(UTC),
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_copies_to_each_destination_in_order_and_verifies(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, destinations=("data", "archive"))
    src = write(tmp_path / "source/2026/run/scan_0001.h5", os.urandom(3_000_000))
    old = 1_700_000_000
    os.utime(src, (old, old))
    producer = Service("test-producer")
    async with (
        running(producer, config, nats_server.url) as bus,
        running(build_mover(config), config, nats_server.url),
        collecting(nats_server.url) as events,
    ):
        await bus.publish(announce(tmp_path / "source", "bl832", ["2026/run/scan_0001.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 2)
    first, second = events.moved
    assert (first.destination_endpoint, first.step) == ("data", 1)
    assert (second.destination_endpoint, second.step) == ("archive", 2)
    digest, size = file_checksum(src)
    for event in events.moved:
        dest = tmp_path / event.destination_endpoint / "2026/run/scan_0001.h5"
        assert dest.read_bytes() == src.read_bytes()
        assert int(dest.stat().st_mtime) == old
        assert event.files[0].checksum == digest and event.files[0].algorithm == ALGORITHM
        assert event.files[0].size == size and event.copied
    assert not list((tmp_path / "data").rglob("*.part"))


async def test_verified_copy_is_not_written_again(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    src = write(tmp_path / "source/a.h5", b"x" * 100_000)
    dest = write(tmp_path / "data/a.h5", src.read_bytes())
    inode = dest.stat().st_ino
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["a.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 1)
    assert events.moved[0].copied is False
    assert dest.stat().st_ino == inode  # same file: not rewritten


async def test_a_different_file_at_the_destination_is_replaced(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    src = write(tmp_path / "source/a.h5", b"new" * 1000)
    dest = write(tmp_path / "data/a.h5", b"old" * 1000)  # same size, different bytes
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["a.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 1)
    assert events.moved[0].copied is True
    assert dest.read_bytes() == src.read_bytes()


@pytest.mark.parametrize(
    ("payload", "expect"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"schema_version": 2, "scan_id": "x", "beamline": "bl832"}', "schema_version"),
        (
            json.dumps(
                {
                    "schema_version": 1,
                    "scan_id": "x",
                    "beamline": "bl832",
                    "endpoint": "source",
                    "scan_path": "a",
                    "files": [],
                    "detected_at": "2026-01-01T00:00:00Z",
                }
            ).encode(),
            "files",
        ),
    ],
    ids=["not-json", "wrong-version", "no-files"],
)
async def test_malformed_event_is_dead_lettered_and_the_mover_keeps_going(
    tmp_path: Path, nats_server: EmbeddedNats, payload: bytes, expect: str
) -> None:
    config = test_config(tmp_path)
    write(tmp_path / "source/ok.h5", b"fine")
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.js.publish("scan.new.bl832", payload, headers={hdr.MSG_ID: "bad-1"})
        await events.wait_for(lambda c: len(c.failed) == 1)
        await bus.publish(announce(tmp_path / "source", "bl832", ["ok.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 1)
    failure = events.failed[0]
    assert failure.permanent and failure.error_type == "InvalidEvent"
    assert expect in failure.reason
    assert failure.deliveries == 1  # never retried
    assert failure.original.data == payload.decode() and failure.original.subject == "scan.new.bl832"
    assert failure.service == "mover" and failure.beamline == "bl832"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlinked-file", "symlinked-folder"])
async def test_paths_escaping_the_root_are_refused(tmp_path: Path, nats_server: EmbeddedNats, kind: str) -> None:
    config = test_config(tmp_path)
    secret = write(tmp_path / "outside/secret.h5", b"not yours")
    source = tmp_path / "source"
    if kind == "dotdot":
        rel = "../outside/secret.h5"
    elif kind == "absolute":
        rel = str(secret)
    elif kind == "symlinked-file":
        (source / "link.h5").symlink_to(secret)
        rel = "link.h5"
    else:
        (source / "linkdir").symlink_to(tmp_path / "outside")
        rel = "linkdir/secret.h5"
    event = ScanNew(
        scan_id="bl832-escape",
        beamline="bl832",
        endpoint="source",
        scan_path="x",
        files=[ScanFile(path=rel, size=9, mtime=0.0)],
        detected_at=datetime.now(UTC),
    )
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.publish(event)
        await events.wait_for(lambda c: len(c.failed) == 1)
    failure = events.failed[0]
    assert failure.error_type == "PathOutsideRoot" and failure.permanent
    assert not events.moved
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == []
    assert secret.read_bytes() == b"not yours"


async def test_missing_source_is_dead_lettered(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["gone.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 1)
    assert events.failed[0].error_type == "SourceMissing"
    assert "gone.h5" in events.failed[0].reason


async def test_unknown_beamline_is_dead_lettered(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    write(tmp_path / "source/a.h5", b"1")
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl999", ["a.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 1)
    assert events.failed[0].error_type == "UnknownBeamline"
    assert "bl999" in events.failed[0].reason


async def test_source_changing_during_copy_is_never_reported_verified(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path, max_deliver=3)
    src = write(tmp_path / "source/growing.h5", os.urandom(64 * 1024 * 1024))
    stop = threading.Event()

    def keep_appending() -> None:  # a detector that has not finished writing
        with src.open("ab", buffering=0) as handle:
            while not stop.is_set():
                handle.write(b"more")
                stop.wait(0.0005)

    writer = threading.Thread(target=keep_appending, daemon=True)
    writer.start()
    try:
        async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
            await bus.publish(announce(tmp_path / "source", "bl832", ["growing.h5"]))
            await events.wait_for(lambda c: len(c.failed) == 1, timeout=60)
    finally:
        stop.set()
        writer.join()
    assert not events.moved
    failure = events.failed[0]
    assert "changed" in failure.reason and failure.deliveries == 3 and not failure.permanent
    assert not (tmp_path / "data/growing.h5").exists()
    assert not list((tmp_path / "data").rglob("*.part"))
