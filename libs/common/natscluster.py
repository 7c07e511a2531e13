"""A three-node JetStream cluster on loopback, for testing what production runs (DESIGN.md: NATS as a 3-node
cluster, every stream and consumer with ``nats.replicas: 3``) on one machine, with no Docker.

Each node is an ``EmbeddedNats`` from the same ``nats-server`` binary, with its own name, data folder, client
port and cluster port; every node's ``routes`` lists all three (a route to itself is ignored by the server).
``start`` spawns all nodes before waiting for any: a fresh cluster elects its JetStream meta leader only
once the nodes it was told about are there, so starting them one by one would wait forever on the first.
A node is ready when ``$JS.API.INFO`` answers through it, which in a cluster needs a meta leader; the
cluster is ready when a stream with one replica per node can actually be created, which is what every user
of it does next (a meta leader elected by two nodes is not proof that the third can take a replica).

``kill`` is SIGKILL (a crash, for fault tests); ``restart`` brings a node back on its ports and data folder,
where it rejoins and catches up. ``stream_leader`` says which node leads a stream, so a test can kill it, and
``stream_info`` asks about a stream once it has a leader again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import nats
import nats.errors
from beamflow.common.errors import EmbeddedServerError
from beamflow.common.natsserver import EmbeddedNats, free_port
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamInfo

__all__ = ["EmbeddedCluster"]

# Short, because a JetStream request sent while there is no meta leader is not answered but times out.
PROBE_TIMEOUT = 0.5
PROBE_STREAM = "BEAMFLOW_CLUSTER_PROBE"


class EmbeddedCluster:
    """Three (or ``size``) nats-server processes forming one JetStream cluster on ``host``.

    Use as ``async with EmbeddedCluster(data_dir) as cluster:`` or call ``start``/``stop``. ``urls`` is the
    comma-joined client URLs, ``url_list`` the same as a list (what ``nats.connect`` takes for several).
    """

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        host: str = "127.0.0.1",
        cluster_name: str = "beamflow",
    ) -> None:
        if size < 3:
            # With fewer than three, losing one node loses the quorum: nothing a cluster test could show.
            raise ValueError(f"a JetStream cluster that survives losing a node needs at least 3 nodes, not {size}")
        self.data_dir = Path(data_dir)
        self.cluster_name = cluster_name
        cluster_ports = [free_port(host) for _ in range(size)]
        routes = ",".join(f"nats://{host}:{port}" for port in cluster_ports)
        self._nodes = [
            EmbeddedNats(
                self.data_dir / f"node-{i}",
                host=host,
                server_name=f"{cluster_name}-{i}",
                extra_args=(
                    "--cluster_name",
                    cluster_name,
                    "--cluster",
                    f"nats://{host}:{cluster_port}",
                    "--routes",
                    routes,
                ),
            )
            for i, cluster_port in enumerate(cluster_ports)
        ]

    @property
    def size(self) -> int:
        return len(self._nodes)

    @property
    def url_list(self) -> list[str]:
        return [node.url for node in self._nodes]

    @property
    def urls(self) -> str:
        return ",".join(self.url_list)

    def node(self, i: int) -> EmbeddedNats:
        return self._nodes[i]

    def index_of(self, server_name: str) -> int:
        """The node running as ``server_name`` (what the server reports as a stream's leader or peer)."""
        for i, node in enumerate(self._nodes):
            if node.server_name == server_name:
                return i
        raise KeyError(f"no node of cluster {self.cluster_name} is named {server_name!r}")

    async def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        deadline = time.monotonic() + timeout
        for node in self._nodes:
            node.spawn()
        try:
            await asyncio.gather(*(node.wait_ready(timeout, PROBE_TIMEOUT) for node in self._nodes))
            await self._wait_until_placeable(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    async def _wait_until_placeable(self, deadline: float) -> None:
        nc = await nats.connect(self.url_list, allow_reconnect=False, connect_timeout=2)
        try:
            js = nc.jetstream(timeout=PROBE_TIMEOUT)
            probe = StreamConfig(
                name=PROBE_STREAM,
                subjects=["_beamflow.cluster_probe"],
                storage=StorageType.MEMORY,
                num_replicas=self.size,
            )
            while True:
                try:
                    await js.add_stream(probe)  # the same config again is accepted: a retry after a lost reply is fine
                    await js.delete_stream(PROBE_STREAM)
                    return
                except (nats.errors.Error, TimeoutError) as exc:
                    if time.monotonic() > deadline:
                        raise EmbeddedServerError(
                            f"cluster {self.cluster_name} cannot place a stream on all {self.size} nodes: {exc!r}; "
                            f"see the nats-server.log files under {self.data_dir}"
                        ) from exc
                    await asyncio.sleep(0.05)
        finally:
            await nc.close()

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``, as a crash would."""
        self._nodes[i].kill()

    async def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start node ``i`` again (stopping it first if it runs) on the same ports and data folder."""
        node = self._nodes[i]
        node.stop()
        node.spawn()
        await node.wait_ready(timeout, PROBE_TIMEOUT)

    def stop(self) -> None:
        for node in self._nodes:
            node.stop()

    async def stream_info(
        self, js: JetStreamContext, stream: str, timeout: float = 30.0, subjects_filter: str | None = None
    ) -> StreamInfo:
        """``js.stream_info`` as answered by a leader on a running node, waiting out an election.

        While a stream has no leader its info requests fail or go unanswered; right after a leader dies the
        survivors still name it for a while (until their election timeout), so that counts as no leader yet.
        """
        deadline = time.monotonic() + timeout
        seen: str | None = None
        while True:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                info = await js.stream_info(stream, subjects_filter=subjects_filter)
                seen = info.cluster.leader if info.cluster else None
                if seen and self._nodes[self.index_of(seen)].is_running():
                    return info
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"stream {stream} has no leader on a running node after {timeout:.0f}s (last seen: {seen})"
                )
            await asyncio.sleep(0.1)

    async def stream_leader(self, js: JetStreamContext, stream: str, timeout: float = 30.0) -> int:
        """The index of the running node that leads ``stream`` (see ``stream_info``)."""
        info = await self.stream_info(js, stream, timeout)
        assert info.cluster is not None and info.cluster.leader  # stream_info returns only a led stream
        return self.index_of(info.cluster.leader)

    async def wait_for_replicas(self, js: JetStreamContext, stream: str, timeout: float = 30.0) -> StreamInfo:
        """``stream``'s info once every replica is current: a stream just created, or a node just restarted,
        is not yet one a node can be lost from (its followers may not have joined the quorum)."""
        deadline = time.monotonic() + timeout
        while True:
            info = await self.stream_info(js, stream, max(deadline - time.monotonic(), 0.1))
            peers = info.cluster.replicas if info.cluster else None
            if len(peers or []) == (info.config.num_replicas or 1) - 1 and all(
                p.current and not p.lag for p in peers or []
            ):
                return info
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"replicas of {stream} not current after {timeout:.0f}s: {peers}")
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> EmbeddedCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
