"""Runtime guarantees that no particular service shows on its own, exercised with small test services."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from beamflow.common import subjects
from beamflow.common.bus import server_urls
from beamflow.common.events import ScanFile, ScanNew
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.observe import collecting
from beamflow.common.service import Context, Handler, Service
from beamflow.common.testing import running, test_config


def scan(i: int) -> ScanNew:
    return ScanNew(
        scan_id=f"bl832-{i:04d}",
        beamline="bl832",
        endpoint="source",
        scan_path=f"s{i}",
        files=[ScanFile(path=f"s{i}.h5", size=1, mtime=0.0)],
        detected_at=datetime.now(UTC),
    )


async def test_heartbeats_keep_a_long_handler_from_being_redelivered(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, ack_wait=timedelta(milliseconds=600))
    deliveries: list[int] = []
    finished = asyncio.Event()

    async def slow(ctx: Context, event: ScanNew) -> None:
        deliveries.append(ctx.deliveries)
        await asyncio.sleep(2.0)  # the "long work": more than three ack_waits
        finished.set()

    service = Service("slow", handlers=[Handler("scan-new", subjects.stage_filter(subjects.NEW), ScanNew, slow)])
    async with running(Service("p"), config, nats_server.url) as bus, running(service, config, nats_server.url):
        await bus.publish(scan(1))
        await asyncio.wait_for(finished.wait(), 10)
        info = await bus.js.consumer_info(subjects.SCANS_STREAM, "slow-scan-new")
        while info.num_ack_pending:  # the ack is sent right after the handler returns
            await asyncio.sleep(0.01)
            info = await bus.js.consumer_info(subjects.SCANS_STREAM, "slow-scan-new")
    assert deliveries == [1]
    assert info.delivered.consumer_seq == 1 and info.num_redelivered == 0


async def test_concurrency_is_bounded_per_process(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, concurrency=3)
    active = peak = done = 0
    three_active, release, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold(ctx: Context, event: ScanNew) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        if active == 3:
            three_active.set()
        await release.wait()
        active -= 1
        done += 1
        if done == 10:
            all_done.set()

    service = Service("held", handlers=[Handler("scan-new", subjects.stage_filter(subjects.NEW), ScanNew, hold)])
    async with running(Service("p"), config, nats_server.url) as bus, running(service, config, nats_server.url):
        for i in range(10):
            await bus.publish(scan(i))
        await asyncio.wait_for(three_active.wait(), 10)
        held = await bus.js.consumer_info(subjects.SCANS_STREAM, "held-scan-new")
        release.set()
        await asyncio.wait_for(all_done.wait(), 10)
    assert held.num_ack_pending == 3  # the runtime took no more messages than it had slots for
    assert held.num_pending == 7
    assert peak == 3


async def test_provisioning_is_idempotent_and_uses_configured_settings(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path, max_deliver=7, duplicate_window=timedelta(minutes=5))
    service = Service(
        "svc",
        handlers=[
            Handler("scan-new", subjects.stage_filter(subjects.NEW), ScanNew, lambda ctx, e: asyncio.sleep(0)),
        ],
    )
    async with running(service, config, nats_server.url) as first:
        await first.publish(scan(1))
    async with running(service, config, nats_server.url) as second:  # a restart finds everything in place
        stream = await second.js.stream_info(subjects.SCANS_STREAM)
        consumer = await second.js.consumer_info(subjects.SCANS_STREAM, "svc-scan-new")
    assert stream.state.messages == 1  # the stream was not recreated
    assert stream.config.duplicate_window == 300 and stream.config.num_replicas == 1
    assert consumer.config.max_deliver == 7 and consumer.config.filter_subject == "scan.new.>"


async def test_a_handler_may_only_publish_what_it_declares(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path, max_deliver=1)

    async def rogue(ctx: Context, event: ScanNew) -> None:
        await ctx.publish(scan(99))  # declares no events

    service = Service("rogue", handlers=[Handler("scan-new", subjects.stage_filter(subjects.NEW), ScanNew, rogue)])
    async with (
        running(Service("p"), config, nats_server.url) as bus,
        running(service, config, nats_server.url),
        collecting(nats_server.url) as events,
    ):
        await bus.publish(scan(1))
        await events.wait_for(lambda c: len(c.failed) == 1)
    assert events.failed[0].error_type == "TypeError" and "declares" in events.failed[0].reason
    assert [e.scan_id for e in events.new] == ["bl832-0001"]


async def test_a_comma_joined_url_fails_over_past_a_server_that_is_down(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    both = f"{dead}, {nats_server.url}"
    async with running(Service("p"), config, both) as bus, collecting(both) as events:
        await bus.publish(scan(7))
        await events.wait_for(lambda c: len(c.new) == 1)
        connected = bus.nc.connected_url
    assert connected is not None and connected.port == nats_server.port
    assert [e.scan_id for e in events.new] == ["bl832-0007"]


def test_server_urls_refuses_an_empty_list() -> None:
    assert server_urls("nats://a:1,nats://b:2") == ["nats://a:1", "nats://b:2"]
    with pytest.raises(ValueError, match="no NATS server"):
        server_urls(" , ")
