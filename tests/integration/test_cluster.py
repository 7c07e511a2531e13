"""beamflow on a 3-node JetStream cluster: the SCANS stream leader is SIGKILLed mid-run, and every scan is still
copied, verified and announced exactly once, with no dead letter; a killed node comes back and catches up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from beamflow.common import subjects
from beamflow.common.bus import ensure_streams, stream_configs
from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import NatsUnavailable
from beamflow.common.events import ScanFile, ScanNew, scan_id_for
from beamflow.common.natscluster import EmbeddedCluster
from beamflow.common.natsserver import free_port
from beamflow.common.observe import collecting
from beamflow.common.runtime import Runtime
from beamflow.common.service import Service
from beamflow.common.testing import config_to_yaml, running, test_config, wait_until
from beamflow.mover.service import build as build_mover
from nats.js.api import StreamConfig

SCANS = 200
MOVER = "mover-scan-new"

# What a request to JetStream fails with while a stream has no leader (an election), or before a new stream's
# interest has reached the client's server: no responder (503), or no answer in time (seen here even for a
# stream create that did happen). The outcome is unknown; a publish with a deterministic Nats-Msg-Id, or a
# create with the same config, is safe to send again.
UNANSWERED = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError)

T = TypeVar("T")


def write_scans(source: Path, count: int) -> list[ScanNew]:
    events = []
    for i in range(count):
        rel = f"2026/cluster/scan_{i:04d}.h5"
        path = source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096 + i))
        st = path.stat()
        scan_path = rel.rsplit(".", 1)[0]
        events.append(
            ScanNew(
                scan_id=scan_id_for("bl832", "source", scan_path),
                beamline="bl832",
                endpoint="source",
                scan_path=scan_path,
                files=[ScanFile(path=rel, size=st.st_size, mtime=st.st_mtime)],
                detected_at=datetime.now(UTC),
            )
        )
    return events


class Persistent:
    """Sends a JetStream request until it is answered, counting the attempts that were not."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.unanswered = 0

    async def __call__(self, request: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return await request()
            except (NatsUnavailable, *UNANSWERED) as exc:
                cause = exc.__cause__ if isinstance(exc, NatsUnavailable) else exc
                if not isinstance(cause, UNANSWERED) or time.monotonic() > deadline:
                    raise
                self.unanswered += 1
                await asyncio.sleep(0.05)  # a 503 comes back at once: do not spin on a leaderless stream


async def provision(service: Service, config: BeamflowConfig, url: str) -> None:
    """Start ``service`` (which creates its streams and consumers) and stop it again."""
    runtime = Runtime(service, config, url)
    try:
        await runtime.start()
    finally:
        await runtime.shutdown()


class MoverProcess:
    """``beamflow run mover`` as production runs it, with its health port to know when it is consuming."""

    def __init__(self, config_path: Path, url: str, log: Path) -> None:
        self.health_port = free_port()
        command = ["run", "mover", "--config", str(config_path), "--nats", url, "--health-port", str(self.health_port)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beamflow.common.cli", *command], stdout=log.open("ab"), stderr=subprocess.STDOUT
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=0.5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int:
        """SIGTERM, and the exit code; SIGKILL (code -9) if it does not drain and exit in time."""
        self.process.terminate()
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def test_killing_the_scans_stream_leader_mid_run_loses_and_repeats_nothing(tmp_path: Path) -> None:
    base = test_config(
        tmp_path,
        # An election takes seconds (up to 6 deliveries of a message were seen failing through one), during
        # which the mover's own publishes fail: the budget must outlast it, as production's default (6
        # deliveries, back-off 1 s to 10 min) does; ~35 s here, with short delays so recovery is prompt.
        max_deliver=20,
        backoff=[timedelta(seconds=s) for s in (0.5, 1, 2)],
    )
    events_to_send = write_scans(tmp_path / "source", SCANS)
    ask = Persistent()
    async with EmbeddedCluster(tmp_path / "cluster") as cluster:
        # bus.connect hands its URL to nats.connect as one string, which cannot hold a comma-joined list, so
        # every client gets one node's URL; it learns the other nodes from that server's INFO and fails over
        # to them. The clients that matter are seeded with the node that is killed below.
        config: BeamflowConfig = base.model_copy(
            update={"nats": base.nats.model_copy(update={"replicas": 3, "url": cluster.node(0).url})}
        )
        # Creating an R3 stream or consumer waits for its first election, which now and then outlasts the
        # client's 5 s request timeout here; a service whose start fails like that is restarted in production.
        # Provision once, as the mover does it, until it gets through, so the processes below find it all.
        await ask(partial(provision, build_mover(config), config, cluster.node(0).url))
        async with running(Service("test-publisher"), config, cluster.node(0).url) as bus:
            leader = await cluster.stream_leader(bus.js, subjects.SCANS_STREAM)
            doomed = cluster.node(leader)
            path = config_to_yaml(config, tmp_path / "beamflow.yaml")
            movers = [
                MoverProcess(path, doomed.url, tmp_path / "mover-a.log"),
                MoverProcess(path, cluster.node((leader + 1) % cluster.size).url, tmp_path / "mover-b.log"),
            ]
            try:
                # A mover still starting when its only URL dies never learns the others: both must be in.
                await wait_until(lambda: all(m.ready() for m in movers), timeout=30, what="both movers ready")
                async with collecting(doomed.url) as events:
                    first, second = events_to_send[: SCANS // 2], events_to_send[SCANS // 2 :]
                    for event in first:
                        await ask(partial(bus.publish, event, timeout=2.0))
                    await events.wait_for(lambda c: len(c.moved) >= SCANS // 4, timeout=30)
                    before = await cluster.wait_for_replicas(bus.js, subjects.SCANS_STREAM)
                    streams = [await cluster.stream_info(bus.js, c.name or "") for c in stream_configs(config)]
                    consumers = [
                        await ask(partial(bus.js.consumer_info, subjects.SCANS_STREAM, MOVER)),
                        await ask(partial(bus.js.consumer_info, subjects.ADVISORY_STREAM, f"{MOVER}-maxdeliver")),
                    ]

                    cluster.kill(leader)
                    for event in second:
                        await ask(partial(bus.publish, event, timeout=2.0))
                    new_leader = await cluster.stream_leader(bus.js, subjects.SCANS_STREAM)

                    await events.wait_for(lambda c: len({e.scan_id for e in c.moved}) == SCANS, timeout=60)
                    stored = await cluster.stream_info(bus.js, subjects.SCANS_STREAM, subjects_filter="scan.moved.>")
                    dead = await cluster.stream_info(bus.js, subjects.DEAD_LETTER_STREAM)
            finally:
                exit_codes = [mover.stop() for mover in movers]

    assert exit_codes == [0, 0]  # both drained and exited on SIGTERM, the one that lost its node included
    assert before.cluster is not None and before.cluster.leader == doomed.server_name
    for info in [*streams, *consumers]:
        assert info.config.num_replicas == 3 and info.cluster is not None and info.cluster.leader
        assert len(info.cluster.replicas or []) == 2  # the two followers, besides the leader
    assert new_leader != leader

    moved_per_scan = Counter(e.scan_id for e in events.moved)
    assert set(moved_per_scan) == {e.scan_id for e in events_to_send}
    assert set(moved_per_scan.values()) == {1}  # no scan announced twice, election or not
    assert sum((stored.state.subjects or {}).values()) == SCANS
    assert not events.failed and dead.state.messages == 0
    for event in events_to_send:
        rel = event.files[0].path
        assert (tmp_path / "data" / rel).read_bytes() == (tmp_path / "source" / rel).read_bytes()
    print(f"\nrequests sent again: {ask.unanswered}; leader {leader} -> {new_leader}")


async def test_a_killed_node_restarts_and_catches_up(tmp_path: Path) -> None:
    async with EmbeddedCluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(cluster.url_list)
        try:
            js = nc.jetstream()
            probe = StreamConfig(name="PROBE", subjects=["probe.>"], num_replicas=3)
            ask = Persistent()
            await ask(partial(js.add_stream, probe))
            await cluster.wait_for_replicas(js, "PROBE")
            leader = await cluster.stream_leader(js, "PROBE")
            assert nc.connected_url is not None
            ours = next(i for i in range(cluster.size) if cluster.node(i).port == nc.connected_url.port)
            # Neither the leader nor this client's server: this is about a stream losing a replica (the test
            # above covers clients failing over).
            follower = next(i for i in range(cluster.size) if i not in (leader, ours))
            for i in range(100):
                if i == 50:
                    cluster.kill(follower)  # two of three keep the quorum: no election, publishing goes on
                await ask(partial(js.publish, "probe.x", str(i).encode(), headers={"Nats-Msg-Id": f"p{i}"}))
            await cluster.restart(follower)
            info = await cluster.wait_for_replicas(js, "PROBE")
        finally:
            await nc.close()
    assert info.state.messages == 100


async def test_provisioning_waits_while_a_restarted_node_is_still_counted_offline(tmp_path: Path) -> None:
    # For a moment after a node comes back, the meta leader still counts it offline and refuses to place a
    # replicated stream ("no suitable peers for placement, peer offline"); a service starting then (a rolling
    # restart of the NATS StatefulSet, or CI's cluster just formed) must wait it out, not crash.
    base = test_config(tmp_path)
    config = base.model_copy(update={"nats": base.nats.model_copy(update={"replicas": 3})})
    async with EmbeddedCluster(tmp_path / "cluster") as cluster:
        nc = await nats.connect(cluster.node(0).url)
        try:
            js = nc.jetstream(timeout=5)
            cluster.kill(2)
            await cluster.restart(2)
            await ensure_streams(js, config)
            for wanted in stream_configs(config):
                assert wanted.name is not None
                info = await cluster.stream_info(js, wanted.name)
                assert info.config.num_replicas == 3
        finally:
            await nc.close()
