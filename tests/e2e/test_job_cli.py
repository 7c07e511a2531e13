"""``beamflow job ls`` and ``beamflow job cancel SCAN`` as an operator runs them, on a local analysis job."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from beamflow.analyzer.registry import JobRegistry
from beamflow.analyzer.service import build as build_analyzer
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, harness
from beamflow.mover.service import build as build_mover
from tests.e2e.test_retention_cli import beamflow
from tests.integration.test_analyzer import analyzer_config
from tests.integration.test_mover import announce, write


async def test_an_operator_lists_running_jobs_and_cancels_one(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = analyzer_config(tmp_path, mode="hang")
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    common = ("--nats", nats_server.url, "-c", str(config_file))
    write(tmp_path / "source/P-1/scan_c.h5", os.urandom(100))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_c.h5"])
        await bus.publish(scan)
        registry = await JobRegistry.open(bus.js)
        deadline = time.monotonic() + 30
        while (entry := await registry.get(scan.scan_id, "sizes")) is None or entry.state != "running":
            assert time.monotonic() < deadline, "the job never started"
            await asyncio.sleep(0.05)  # the analyzer writes the registry from its own task
        listed = await beamflow("job", "ls", *common)
        cancelled = await beamflow("job", "cancel", scan.scan_id, *common)
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=30)
        again = await beamflow("job", "cancel", scan.scan_id, *common)
        after = await beamflow("job", "ls", *common)
    assert listed.returncode == 0 and scan.scan_id in listed.stdout and "running" in listed.stdout, listed.stdout
    assert cancelled.returncode == 0 and f"cancel requested for sizes job {entry.job_id}" in cancelled.stdout
    assert "cancelled by an operator" in events.failed[0].reason
    assert again.returncode == 1 and "no running analysis job" in again.stderr
    assert "cancelled" in after.stdout, after.stdout
