"""Retention end to end on a real nats-server: holds placed by the mover, fired by the server, pruned safely.

Mover, ledger and pruner run as real services; the source's retention is a second or two, so each hold
really expires through a JetStream message schedule while the test waits for the outcome on the bus.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from beamflow.common import holds
from beamflow.common.checksums import file_checksum
from beamflow.common.endpoints import RetentionRule
from beamflow.common.events import utcnow
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness, running, test_config, wait_for_record, wait_until
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from tests.integration.test_mover import announce, write


def retention_config(tmp_path: Path, seconds: float = 1.0) -> object:
    rule = RetentionRule(keep_for=timedelta(seconds=seconds), check_endpoint="data")
    return test_config(tmp_path, retention={"source": rule})


async def test_source_is_pruned_once_its_hold_expires_and_the_copy_checks_out(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = retention_config(tmp_path)
    src = write(tmp_path / "source/run/scan_1.h5", os.urandom(200_000))
    digest, size = file_checksum(src)
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["run/scan_1.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.pruned) == 1, timeout=30)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "source" in r.prunes)
    assert not src.exists(), "the source must be deleted once the hold expired and the copy verified"
    assert (tmp_path / "data/run/scan_1.h5").read_bytes() != b""
    pruned = events.pruned[0]
    assert (pruned.endpoint, pruned.check_endpoint, pruned.files, pruned.freed_bytes) == (
        "source",
        "data",
        ["run/scan_1.h5"],
        size,
    )
    assert not events.failed
    assert record.copies["data"].files[0].checksum == digest
    assert record.holds["source"].state == "expired"
    assert record.prunes["source"].freed_bytes == size
    assert record.state == "pruned"


@pytest.mark.parametrize("damage", ["corrupt", "delete"])
async def test_a_damaged_copy_is_never_pruned_at_the_source(
    tmp_path: Path, nats_server: EmbeddedNats, damage: str
) -> None:
    config = retention_config(tmp_path, seconds=2)
    src = write(tmp_path / "source/scan_2.h5", os.urandom(100_000))
    original = src.read_bytes()
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["scan_2.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.moved) == 1)
        copy = tmp_path / "data/scan_2.h5"
        if damage == "corrupt":  # flip bytes in the middle, keep the size
            data = bytearray(copy.read_bytes())
            data[50_000:50_010] = bytes(b ^ 0xFF for b in data[50_000:50_010])
            copy.write_bytes(bytes(data))
        else:
            copy.unlink()
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=30)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: bool(r.failures))
    assert src.read_bytes() == original, "the source must be untouched"
    assert not events.pruned
    dead = events.failed[0]
    assert dead.service == "pruner" and dead.error_type == "PruneRefused" and dead.permanent
    expected = "corrupt" if damage == "corrupt" else "missing on data"
    assert expected in dead.reason
    assert record.state == "failed"
    assert any(expected in f.reason for f in record.failures)


async def test_an_extended_hold_is_not_pruned_at_its_first_expiry(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = retention_config(tmp_path, seconds=2)
    src = write(tmp_path / "source/scan_3.h5", os.urandom(10_000))
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["scan_3.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.moved) == 1)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "source" in r.holds)
        _, hold = holds.latest_hold(record, "source")
        extended_to = utcnow() + timedelta(seconds=4)
        await holds.reschedule(bus.js, config, hold, extended_to, "extended")
        await events.wait_for(lambda c: len(c.pruned) + len(c.failed) == 1, timeout=30)
    assert not events.failed, events.failed[0].reason
    pruned_at = events.pruned[0].occurred_at
    assert pruned_at >= extended_to.replace(microsecond=0), "pruned before the extended hold expired"
    assert not src.exists()


async def test_a_source_already_gone_counts_as_pruned(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = retention_config(tmp_path, seconds=1)
    src = write(tmp_path / "source/scan_4.h5", os.urandom(10_000))
    services = (build_mover(config), build_ledger(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["scan_4.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 1)
        src.unlink()
        await events.wait_for(lambda c: len(c.pruned) == 1, timeout=30)
    assert events.pruned[0].freed_bytes == 0
    assert not events.failed


async def test_a_hold_that_fires_before_the_ledger_knows_the_copy_waits_for_it(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    # The ledger service is down when the hold fires: the pruner must neither delete nor refuse for good.
    rule = RetentionRule(keep_for=timedelta(seconds=1), check_endpoint="data")
    config = test_config(tmp_path, retention={"source": rule}, max_deliver=60, backoff=[timedelta(milliseconds=200)])
    src = write(tmp_path / "source/scan_5.h5", os.urandom(10_000))
    async with (
        harness(config, nats_server.url, build_mover(config)) as (bus, events),
        running(build_pruner(config), config, nats_server.url) as pruner,
    ):
        await bus.publish(announce(tmp_path / "source", "bl832", ["scan_5.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 1)
        await wait_until(lambda: pruner.stats["retried"] >= 2, what="the pruner retrying the hold")
        assert src.exists() and not events.pruned and not events.failed
        async with running(build_ledger(config), config, nats_server.url):
            await events.wait_for(lambda c: len(c.pruned) == 1, timeout=30)
    assert not src.exists()
    assert not events.failed
