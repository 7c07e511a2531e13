"""``beamflow status``, ``prune --dry-run`` and ``hold extend|release`` as an operator runs them.

The services run in this process against a real nats-server; the commands run as separate processes,
reading the same ledger and holds an operator's terminal would.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from beamflow.common.checksums import file_checksum
from beamflow.common.endpoints import RetentionRule
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, harness, test_config, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from tests.integration.test_mover import announce, write

BEAMFLOW = [sys.executable, "-m", "beamflow.common.cli"]


async def beamflow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a thread, so the services in this process keep working meanwhile."""
    return await asyncio.to_thread(
        subprocess.run,
        [*BEAMFLOW, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )


async def test_status_of_a_pruned_scan_shows_copies_checksums_hold_and_prune(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    rule = RetentionRule(keep_for=timedelta(seconds=1), check_endpoint="data")
    config = test_config(tmp_path, retention={"source": rule})
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    src = write(tmp_path / "source/run/scan_7.h5", os.urandom(4096))
    digest, _ = file_checksum(src)
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, _):
        scan = announce(tmp_path / "source", "bl832", ["run/scan_7.h5"])
        await bus.publish(scan)
        await wait_for_record(bus.js, scan.scan_id, lambda r: "source" in r.prunes)
        done = await beamflow("status", scan.scan_id, "--nats", nats_server.url, "-c", str(config_file))
        listing = await beamflow("status", "--state", "pruned", "--nats", nats_server.url, "-c", str(config_file))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert re.search(rf"data\s+│\s+source\s+│\s+{stamp}.*run/scan_7\.h5.*xxh3-128:{digest}", text), text
    assert re.search(rf"source\s+│\s+data\s+│\s+{stamp}.*│\s+{stamp}.*│\s+expired", text), text
    assert re.search(rf"source\s+│\s+{stamp}.*│\s+1\s+│\s+4096\s+│\s+data", text), text
    assert "pruned source" in text and "state     pruned" in text
    assert listing.returncode == 0 and scan.scan_id in listing.stdout


async def test_dry_run_extend_and_release(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    rule = RetentionRule(keep_for=timedelta(days=1), check_endpoint="data")
    config = test_config(tmp_path, retention={"source": rule})
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    good = write(tmp_path / "source/good.h5", os.urandom(2048))
    write(tmp_path / "source/bad.h5", os.urandom(2048))
    common = ("--nats", nats_server.url, "-c", str(config_file))
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scans = [announce(tmp_path / "source", "bl832", [name]) for name in ("good.h5", "bad.h5")]
        for scan in scans:
            await bus.publish(scan)
        for scan in scans:
            await wait_for_record(bus.js, scan.scan_id, lambda r: "source" in r.holds)
        (tmp_path / "data/bad.h5").write_bytes(b"not the copy")

        dry = await beamflow("prune", "--dry-run", *common)
        assert dry.returncode == 0, dry.stderr
        good_row = next(line for line in dry.stdout.splitlines() if scans[0].scan_id in line)
        bad_row = next(line for line in dry.stdout.splitlines() if scans[1].scan_id in line)
        assert "yes" in good_row
        assert "no" in bad_row and "bad.h5" in bad_row
        assert "2 hold(s); 1 would pass" in dry.stdout

        extended = await beamflow("hold", "extend", scans[0].scan_id, "--by", "30d", *common)
        assert extended.returncode == 0, extended.stderr
        record = await wait_for_record(bus.js, scans[0].scan_id, lambda r: r.holds["source"].last_action == "extended")
        assert record.holds["source"].expires_at - record.holds["source"].placed_at > timedelta(days=29)

        released = await beamflow("hold", "release", scans[0].scan_id, *common)
        assert released.returncode == 0, released.stderr
        await events.wait_for(lambda c: len(c.pruned) == 1, timeout=30)
    assert not good.exists()
    assert events.pruned[0].scan_id == scans[0].scan_id
    assert (tmp_path / "source/bad.h5").exists()


async def test_status_of_an_unknown_scan_says_so(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    async with harness(config, nats_server.url, build_ledger(config)):
        done = await beamflow("status", "bl832-0000", "--nats", nats_server.url, "-c", str(config_file))
    assert done.returncode == 1
    assert "no scan 'bl832-0000' in the ledger" in done.stderr


async def test_an_unreachable_server_is_reported_quickly(tmp_path: Path) -> None:
    config_file = config_to_yaml(test_config(tmp_path), tmp_path / "config.yaml")
    done = await beamflow("status", "--nats", "nats://127.0.0.1:1", "-c", str(config_file))
    assert done.returncode == 1
    assert "cannot reach NATS at nats://127.0.0.1:1" in done.stderr
