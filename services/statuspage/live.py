"""The live-update feed: what happens on the bus, pushed to every open page as Server-Sent Events.

One set of ordered consumers per status page process (deliver new, so a page opened now is not sent the past)
on the ``SCANS``, ``DEADLETTERS`` and ``FLIGHT`` streams, and on the ledger bucket's stream, fanned out to one
bounded queue per browser:

- ``scan``: a scan's new table row, sent when the ledger folded an event into its record (so the row a page
  shows is never ahead of or behind ``beamflow status``);
- ``deadletter``: a new dead letter, with the sequence its replay button sends;
- ``activity``: every scan event, dead letter and flight check result, as it is stored.

A browser that cannot keep up loses its stream (it reconnects by itself and reloads the lists) rather than
making the feed hold messages for it. Streams a service has not created yet are subscribed to once they exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from beamflow.common import subjects
from beamflow.common.deadletters import DeadLetter, stage_of
from beamflow.common.events import EVENT_TYPES, Event, FlightChecked, ScanFailed, ScanMoved, ScanNew
from beamflow.common.ledger import ScanRecord
from beamflow.statuspage.views import Activity, dead_letter_view, scan_row
from beamflow.statuspage.wire import event_frame
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

#: Frames one browser may have waiting before it is cut off.
QUEUE_SIZE = 256
#: Heartbeats of the ordered consumers: after a server restart each is re-created within two of them.
HEARTBEAT_S = 2.0
#: How often to look again for a stream no service has created yet.
STREAM_RETRY_S = 0.5


class Listener:
    """One browser's share of the feed: frames to send, in order; ``None`` ends the stream."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE + 1)
        self.overflowed = False

    def put(self, frame: bytes | None) -> bool:
        """Queue ``frame``; False when the browser fell too far behind (its stream is ended)."""
        if self.overflowed:
            return False
        if frame is not None and self.queue.qsize() >= QUEUE_SIZE:
            self.overflowed = True
            frame = None  # the slot kept free for this: the stream ends and the page reconnects
        self.queue.put_nowait(frame)
        return not self.overflowed

    async def get(self) -> bytes | None:
        return await self.queue.get()


@dataclass(frozen=True)
class _Source:
    stream: str
    subject: str
    handler: Callable[[Msg], Awaitable[None]]


def _summary(event: Event) -> str:
    if isinstance(event, ScanNew):
        return f"detected on {event.endpoint}: {len(event.files)} file(s)"
    if isinstance(event, ScanMoved):
        return f"verified copy at {event.destination_endpoint}"
    if isinstance(event, ScanFailed):
        return f"{event.service} gave up: {event.error_type}"
    if isinstance(event, FlightChecked):
        return "flight check passed" if event.ok else "flight check FAILED"
    return event.event_type


class LiveFeed:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.listeners: set[Listener] = set()
        self.ready = asyncio.Event()
        """Set once every source is subscribed: from then on, nothing stored is missed."""
        self._subscriptions: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe_all(), name="statuspage-live")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subscriptions:
            with contextlib.suppress(Exception):  # the connection may be closing under it
                await sub.unsubscribe()
        for listener in list(self.listeners):
            listener.put(None)
        self.listeners.clear()

    def listen(self) -> Listener:
        listener = Listener()
        self.listeners.add(listener)
        return listener

    def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def _send(self, kind: str, payload: BaseModel) -> None:
        frame = event_frame(kind, payload.model_dump_json())
        for listener in list(self.listeners):
            if not listener.put(frame):
                self.listeners.discard(listener)
                log.info("a page fell behind the live feed; its stream was ended", extra={"queued": QUEUE_SIZE})

    async def _subscribe_all(self) -> None:
        sources = [
            _Source(subjects.SCANS_STREAM, ">", self._on_scan_event),
            _Source(subjects.DEAD_LETTER_STREAM, ">", self._on_dead_letter),
            _Source(subjects.FLIGHT_STREAM, subjects.flight_subject("result", "*"), self._on_flight),
            _Source(f"KV_{subjects.LEDGER_BUCKET}", f"$KV.{subjects.LEDGER_BUCKET}.>", self._on_record),
        ]
        for source in sources:
            self._subscriptions.append(await self._subscribe(source))
        self.ready.set()
        log.info("live feed subscribed", extra={"streams": [s.stream for s in sources]})

    async def _subscribe(self, source: _Source) -> Subscription:
        waiting_logged = False
        while True:
            try:
                return await self.js.subscribe(
                    source.subject,
                    stream=source.stream,
                    ordered_consumer=True,
                    idle_heartbeat=HEARTBEAT_S,
                    deliver_policy=DeliverPolicy.NEW,
                    cb=source.handler,
                )
            except NotFoundError:
                if not waiting_logged:
                    log.info("waiting for a service to create a stream", extra={"stream": source.stream})
                    waiting_logged = True
            await asyncio.sleep(STREAM_RETRY_S)  # the stream is created by a service in another process

    async def _on_scan_event(self, msg: Msg) -> None:
        if not self.listeners:
            return  # nobody is watching: not worth parsing
        model = EVENT_TYPES.get(stage_of(msg.subject))
        if model is None:
            return
        try:
            event = model.model_validate_json(msg.data)
        except ValidationError:
            return  # a malformed message; the service that reads it dead-letters it, and that shows
        self._activity(msg, event)

    async def _on_dead_letter(self, msg: Msg) -> None:
        if not self.listeners:
            return  # nobody is watching: not worth parsing
        try:
            event = ScanFailed.model_validate_json(msg.data)
        except ValidationError:
            return
        meta = msg.metadata
        if meta.timestamp is not None:
            self._send("deadletter", dead_letter_view(DeadLetter(meta.sequence.stream, meta.timestamp, event)))
        self._activity(msg, event)

    async def _on_flight(self, msg: Msg) -> None:
        if not self.listeners:
            return  # nobody is watching: not worth parsing
        try:
            event = FlightChecked.model_validate_json(msg.data)
        except ValidationError:
            return
        self._activity(msg, event)

    async def _on_record(self, msg: Msg) -> None:
        if not self.listeners or not msg.data:
            return  # nobody is watching, or a deleted or purged key
        try:
            record = ScanRecord.model_validate_json(msg.data)
        except ValidationError:
            return
        self._send("scan", scan_row(record))

    def _activity(self, msg: Msg, event: Event) -> None:
        stored = msg.metadata.timestamp if msg.metadata else None
        self._send(
            "activity",
            Activity(
                at=stored or event.occurred_at,
                subject=msg.subject,
                stage=stage_of(msg.subject) if msg.subject.startswith("scan.") else event.stage,
                beamline=event.beamline,
                scan_id=event.scan_id,
                summary=_summary(event),
            ),
        )
