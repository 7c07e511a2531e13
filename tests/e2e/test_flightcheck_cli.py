"""``beamflow flight-check BL --wait`` as an operator runs it, against services running in this process."""

from __future__ import annotations

from pathlib import Path

from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, harness
from beamflow.flightcheck.service import build as build_flightcheck
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.watcher.service import build as build_watcher
from tests.e2e.test_retention_cli import beamflow
from tests.integration.test_flightcheck import flight_config


async def test_flight_check_now_waits_for_and_prints_the_result(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = flight_config(tmp_path)
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    common = ("--nats", nats_server.url, "-c", str(config_file))
    services = (build_watcher(config), build_mover(config), build_ledger(config), build_flightcheck(config))
    async with harness(config, nats_server.url, *services):
        done = await beamflow("flight-check", "bl832", "--wait", *common)
        unknown = await beamflow("flight-check", "bl999", *common)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "flight check of bl832 passed" in done.stdout and "verified copies at: archive, data" in done.stdout
    assert unknown.returncode == 2 and "has no flight_check" in unknown.stderr
