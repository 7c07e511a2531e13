"""Watching the bus from outside: every scan event and dead letter, parsed, as it is stored.

Used by ``beamflow demo`` for its live progress, by the benchmarks to time outcomes, and by tests to wait
for an outcome instead of sleeping. It reads the streams with ordered ephemeral consumers from the first
message, so nothing published before it started is missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import nats
from beamflow.common import subjects
from beamflow.common.bus import server_urls
from beamflow.common.events import (
    EVENT_TYPES,
    Event,
    FlightChecked,
    ScanFailed,
    ScanIngested,
    ScanMoved,
    ScanNew,
    ScanPruned,
)
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

__all__ = ["EventCollector", "collecting"]


#: Idle heartbeat of the collector's ordered consumers (seconds).
COLLECTOR_HEARTBEAT_S = 1.0


class EventCollector:
    """Every event stored on SCANS and DEADLETTERS, and every flight check result, parsed, in arrival order."""

    def __init__(self, url: str, auth: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.auth = dict(auth or {})
        self.events: list[Event] = []
        self.received_at: list[float] = []  # time.time() when each entry of ``events`` arrived here
        self._changed = asyncio.Condition()
        self._nc: Client | None = None

    async def start(self, stream_timeout: float = 10.0) -> EventCollector:
        self._nc = await nats.connect(
            server_urls(self.url), max_reconnect_attempts=-1, reconnect_time_wait=0.2, **self.auth
        )
        js = self._nc.jetstream()
        for stream in (subjects.SCANS_STREAM, subjects.DEAD_LETTER_STREAM, subjects.FLIGHT_STREAM):
            await self._wait_for_stream(stream, stream_timeout)
            # Heartbeats every second: after a server restart the ordered consumer is re-created once two are
            # missed, so the collector catches up in about 2 s instead of nats-py's default 10 s.
            await js.subscribe(
                ">",
                stream=stream,
                ordered_consumer=True,
                idle_heartbeat=COLLECTOR_HEARTBEAT_S,
                cb=self._on_msg,
                deliver_policy=DeliverPolicy.ALL,
            )
        return self

    async def _wait_for_stream(self, stream: str, timeout: float) -> None:
        assert self._nc is not None
        js = self._nc.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            try:
                await js.stream_info(stream)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"stream {stream} was never created; is any beamflow service running?") from None
            await asyncio.sleep(0.05)  # the stream is created by a service in another process

    async def _on_msg(self, msg: Msg) -> None:
        stage = msg.subject.split(".")[1] if msg.subject.startswith("scan.") else ""
        model: type[Event] | None = EVENT_TYPES.get(stage)
        if msg.subject.startswith(subjects.flight_subject("result", "")):
            model = FlightChecked  # the FLIGHT stream's requests and schedules are not outcomes
        if model is not None:
            with contextlib.suppress(ValueError):
                self.events.append(model.model_validate_json(msg.data))
                self.received_at.append(time.time())
        async with self._changed:
            self._changed.notify_all()

    def of(self, model: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, model)]

    @property
    def new(self) -> list[ScanNew]:
        return self.of(ScanNew)

    @property
    def moved(self) -> list[ScanMoved]:
        return self.of(ScanMoved)

    @property
    def ingested(self) -> list[ScanIngested]:
        return self.of(ScanIngested)

    @property
    def pruned(self) -> list[ScanPruned]:
        return self.of(ScanPruned)

    @property
    def failed(self) -> list[ScanFailed]:
        return self.of(ScanFailed)

    async def wait_for(self, predicate: Callable[[EventCollector], bool], timeout: float = 20.0) -> None:
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            stages = [f"{e.stage}:{e.scan_id}" for e in self.events][-20:]
            raise AssertionError(f"condition not met within {timeout}s; last events: {stages}") from None

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()


@contextlib.asynccontextmanager
async def collecting(url: str, auth: Mapping[str, Any] | None = None) -> AsyncIterator[EventCollector]:
    collector = await EventCollector(url, auth).start()
    try:
        yield collector
    finally:
        await collector.close()
