"""The watcher against a real nats-server: inotify, polling, grouping, reconcile and the offline spool."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from beamflow.common.config import BeamflowConfig
from beamflow.common.events import scan_id_for
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import collecting
from beamflow.common.testing import running, test_config, wait_until
from beamflow.watcher.service import build as build_watcher


def write(path: Path, data: bytes = b"data") -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(data)
    return time.time()


def saxs(base: Path, **kw: object) -> BeamflowConfig:
    return test_config(base, beamline="bl733", suffixes=(".txt", ".edf"), **kw)  # type: ignore[arg-type]


async def test_inotify_announces_a_finished_file(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        await wait_until(lambda: (tmp_path / "state/watcher/bl832").exists())
        closed = write(tmp_path / "source/2026/tomo_0001.h5", b"h" * 1234)
        await events.wait_for(lambda c: len(c.new) == 1)
    event = events.new[0]
    assert event.scan_id == scan_id_for("bl832", "source", "2026/tomo_0001")
    assert [(f.path, f.size) for f in event.files] == [("2026/tomo_0001.h5", 1234)]
    assert abs(event.detected_at.timestamp() - closed) < 1.0


async def test_a_saxs_scan_is_announced_once_both_files_are_written(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = saxs(tmp_path)
    src = tmp_path / "source"
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        await wait_until(lambda: (tmp_path / "state/watcher/bl733").exists())
        write(src / "run/a.txt")  # header of scan a; its image is not there yet
        write(src / "run/b.txt")
        write(src / "run/b.edf")
        await events.wait_for(lambda c: len(c.new) == 1)
        assert events.new[0].scan_path == "run/b"  # a was noticed first but is incomplete
        write(src / "run/a.edf")
        await events.wait_for(lambda c: len(c.new) == 2)
        write(src / "run/a.edf", b"rewritten")  # a second close of a finished scan: same id, absorbed
        write(src / "run/c.txt")
        write(src / "run/c.edf")
        await events.wait_for(lambda c: len(c.new) == 3)
    assert [e.scan_path for e in events.new] == ["run/b", "run/a", "run/c"]
    assert sorted(f.path for f in events.new[1].files) == ["run/a.edf", "run/a.txt"]


async def test_write_to_temp_then_rename_is_noticed_and_temp_files_are_ignored(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    src = tmp_path / "source"
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        await wait_until(lambda: (tmp_path / "state/watcher/bl832").exists())
        write(src / ".tomo_0002.h5.tmp")
        os.rename(src / ".tomo_0002.h5.tmp", src / "tomo_0002.h5")
        write(src / ".hidden.h5")  # matches the rule's suffix but is ignored as a dotfile
        write(src / "tomo_0003.h5")
        await events.wait_for(lambda c: len(c.new) == 2)
    assert [e.scan_path for e in events.new] == ["tomo_0002", "tomo_0003"]


async def test_polling_waits_for_a_stable_file(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, mode="poll")
    src = tmp_path / "source"
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        path = src / "slow.h5"
        write(path, b"part one")
        with path.open("ab") as handle:  # keeps growing for a while: must not be announced meanwhile
            for _ in range(10):
                handle.write(b"more")
                handle.flush()
                await asyncio.sleep(0.05)  # the simulated detector's write pace, not a synchronisation
        assert not events.new
        await events.wait_for(lambda c: len(c.new) == 1)
    assert events.new[0].files[0].size == len(b"part one") + 40


async def test_reconcile_at_start_announces_scans_written_while_the_watcher_was_down(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    src = tmp_path / "source"
    old = time.time() - 3600
    for name in ("x/old_1.h5", "x/old_2.h5"):
        write(src / name)
        os.utime(src / name, (old, old))
    write(src / "x/fresh.h5")  # younger than `settle`, no close seen: may still be written, so not announced
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        await events.wait_for(lambda c: len(c.new) == 2)
        write(src / "x/after.h5")
        await events.wait_for(lambda c: len(c.new) == 3)
    assert [e.scan_path for e in events.new] == ["x/old_1", "x/old_2", "x/after"]


async def test_scans_are_spooled_while_nats_is_down_and_all_arrive_later(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    src = tmp_path / "source"
    pending = tmp_path / "state/watcher/bl832/pending"
    async with running(build_watcher(config), config, nats_server.url):
        await wait_until(lambda: pending.exists())
        write(src / "before.h5")
        await wait_until(
            lambda: not list(pending.iterdir()) and (tmp_path / "state/watcher/bl832/announced.log").stat().st_size > 0
        )
        nats_server.stop()
        for i in range(5):
            write(src / f"during_{i}.h5")
        await wait_until(lambda: len(list(pending.glob("*.json"))) == 5)
        await nats_server.start()
        async with collecting(nats_server.url) as events:
            await events.wait_for(lambda c: len(c.new) == 6, timeout=30)
    assert sorted(e.scan_path for e in events.new) == ["before", *[f"during_{i}" for i in range(5)]]
    assert not list(pending.glob("*.json"))


async def test_watcher_started_without_nats_spools_and_delivers_when_it_appears(tmp_path: Path) -> None:
    config = test_config(tmp_path)
    server = EmbeddedNats(tmp_path / "nats")  # not started yet
    pending = tmp_path / "state/watcher/bl832/pending"
    async with running(build_watcher(config), config, server.url):
        await wait_until(lambda: pending.exists())
        for i in range(3):
            write(tmp_path / f"source/offline_{i}.h5")
        await wait_until(lambda: len(list(pending.glob("*.json"))) == 3)
        await server.start()
        try:
            async with collecting(server.url) as events:
                await events.wait_for(lambda c: len(c.new) == 3, timeout=30)
        finally:
            server.stop()
    assert sorted(e.scan_path for e in events.new) == [f"offline_{i}" for i in range(3)]


async def test_files_written_into_a_brand_new_folder_are_not_missed(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    # inotify only watches a new folder once it has seen it created; files closed before that produce no
    # event. Reconcile is an hour away in this config, so only the new-folder handling can find them.
    config = test_config(tmp_path)
    src = tmp_path / "source"
    async with running(build_watcher(config), config, nats_server.url), collecting(nats_server.url) as events:
        await wait_until(lambda: (tmp_path / "state/watcher/bl832").exists())
        for i in range(20):
            write(src / f"day_{i}/sample/tomo_{i}.h5")
        await events.wait_for(lambda c: len(c.new) == 20)
    assert sorted(e.scan_path for e in events.new) == sorted(f"day_{i}/sample/tomo_{i}" for i in range(20))
