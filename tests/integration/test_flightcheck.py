"""The flight check end to end: a real watcher sees the test scan, the mover copies it, the ledger records it,
the flight check confirms every copy, removes the test files everywhere and reports; a broken destination
makes it fail loudly (a result with the reason, an error log, a dead letter). The schedule is a real
JetStream message schedule.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from beamflow.common.config import BeamflowConfig, FlightCheck
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.events import FlightChecked, FlightRequested
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness, test_config
from beamflow.flightcheck.service import build as build_flightcheck
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.watcher.service import build as build_watcher

pytestmark = pytest.mark.timeout(60)


def flight_config(tmp_path: Path, every: timedelta = timedelta(hours=12), **changes: object) -> BeamflowConfig:
    base = test_config(tmp_path, destinations=("data", "archive"), max_deliver=1, ack_wait=timedelta(seconds=30))
    check = FlightCheck(every=every, timeout=timedelta(seconds=20), size=4096)
    beamline = base.beamlines["bl832"].model_copy(update={"flight_check": check, **changes})
    return base.model_copy(update={"beamlines": {"bl832": beamline}})


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_flight_check_goes_through_the_pipeline_and_leaves_nothing_behind(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = flight_config(tmp_path)
    services = (build_watcher(config), build_mover(config), build_ledger(config), build_flightcheck(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        await bus.publish(FlightRequested(beamline="bl832", requested_by="test"))
        await events.wait_for(lambda c: len(c.of(FlightChecked)) >= 1, timeout=40)
    [result] = events.of(FlightChecked)
    assert result.ok, result.problems
    assert result.verified == ["archive", "data"] and sorted(result.cleaned) == ["archive", "data", "source"]
    [moved_scan] = {m.scan_id for m in events.moved}
    assert moved_scan == result.scan_id
    for endpoint in ("source", "data", "archive"):
        assert files_under(tmp_path / endpoint) == [], f"test files left on {endpoint}"


async def test_a_destination_that_refuses_fails_the_check_with_the_reason_and_an_alert(
    tmp_path: Path, nats_server: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    config = flight_config(tmp_path)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the archive folder should be")
    endpoints = {**config.endpoints, "archive": FilesystemEndpoint(root=blocked)}
    config = config.model_copy(update={"endpoints": endpoints})
    services = (build_watcher(config), build_mover(config), build_ledger(config), build_flightcheck(config))
    with caplog.at_level(logging.ERROR, logger="beamflow"):
        async with harness(config, nats_server.url, *services) as (bus, events):
            await bus.publish(FlightRequested(beamline="bl832", requested_by="test"))
            await events.wait_for(lambda c: len(c.of(FlightChecked)) >= 1 and len(c.failed) >= 2, timeout=40)
    [result] = events.of(FlightChecked)
    assert not result.ok and result.verified == ["data"], result
    assert any("mover:" in p for p in result.problems), result.problems
    reasons = [f.reason for f in events.failed]
    assert any(r.startswith("flight check of bl832 failed") for r in reasons), reasons
    assert any(r.message == "flight check FAILED" and getattr(r, "alert", False) for r in caplog.records)
    assert files_under(tmp_path / "data") == [] and files_under(tmp_path / "source") == [], "cleaned anyway"


async def test_the_schedule_runs_checks_without_anyone_asking(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = flight_config(tmp_path, every=timedelta(seconds=1))
    services = (build_watcher(config), build_mover(config), build_ledger(config), build_flightcheck(config))
    async with harness(config, nats_server.url, *services) as (_, events):
        await events.wait_for(lambda c: len([r for r in c.of(FlightChecked) if r.ok]) >= 2, timeout=40)
    assert len({r.scan_id for r in events.of(FlightChecked)}) >= 2, "each run is a new test scan"
