"""``/metrics`` of a running service: Prometheus text with the handled, dead-lettered and retried messages,
bytes moved and pruned, handler durations and consumer lag, labelled by service, stage, beamline and endpoint,
never by scan. The services run in this process, so one registry holds every service's series.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import httpx
from beamflow.common.endpoints import RetentionRule
from beamflow.common.metrics import configure_metrics
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import collecting
from beamflow.common.runtime import Runtime
from beamflow.common.service import Service
from beamflow.common.testing import running, test_config, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from tests.integration.test_mover import announce, write


def value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (exactly one must match)."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            found.append(float(match.group(2)))
    assert len(found) == 1, f"{name} {labels}: {found}\n" + "\n".join(x for x in text.splitlines() if name in x)
    return found[0]


async def scrape(runtime: Runtime) -> str:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{runtime.health_port}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_metrics_count_messages_bytes_and_lag_without_scan_ids(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    configure_metrics("tests")
    rule = RetentionRule(keep_for=timedelta(seconds=1), check_endpoint="data")
    config = test_config(tmp_path, retention={"source": rule}, max_deliver=1)
    write(tmp_path / "source/M-1/scan_1.h5", os.urandom(123_456))
    async with (
        running(Service("test-publisher"), config, nats_server.url) as bus,
        running(build_mover(config), config, nats_server.url, health_port=0) as mover,
        running(build_ledger(config), config, nats_server.url),
        running(build_pruner(config), config, nats_server.url, health_port=0) as pruner,
        collecting(nats_server.url) as events,
    ):
        scan = announce(tmp_path / "source", "bl832", ["M-1/scan_1.h5"])
        broken = announce(tmp_path / "source", "bl832", ["M-1/never_written.h5"])
        await bus.publish(scan)
        await bus.publish(broken)
        await wait_for_record(bus.js, scan.scan_id, lambda r: "source" in r.prunes)
        await events.wait_for(lambda c: len(c.failed) >= 1)
        text = await scrape(mover)
        pruned_text = await scrape(pruner)
    moved = value(text, "beamflow_messages_total", service="mover", stage="new", beamline="bl832", outcome="ok")
    dead = value(text, "beamflow_messages_total", service="mover", stage="new", outcome="dead_lettered")
    assert moved >= 1 and dead >= 1
    assert value(text, "beamflow_moved_bytes_total", beamline="bl832", endpoint="data") >= 123_456
    assert value(text, "beamflow_handler_duration_seconds_count", service="mover", stage="new") >= 2
    assert value(pruned_text, "beamflow_pruned_bytes_total", beamline="bl832", endpoint="source") >= 123_456
    assert value(text, "beamflow_consumer_pending", service="mover", consumer="mover-scan-new") >= 0
    assert value(pruned_text, "beamflow_holds_pending", stream="HOLDS") >= 0
    assert 'le="' in text and "beamflow_transfer_speed_bytes_per_second_bucket" in text
    assert scan.scan_id not in text and "scan_1" not in text, "labels are bounded: no scan ids, no paths"
