"""The service runtime: everything between NATS and a handler, written once for every service.

For each handler it provisions a durable pull consumer on the SCANS stream and runs a pull loop with
bounded concurrency (one budget per process). Each message goes through the delivery rules:

- the payload is validated against the handler's event model; a message that does not validate is
  dead-lettered at once with the validation error (never retried, never a crash);
- the handler runs inside a span whose parent is the trace context from the message headers, while a
  heartbeat (``in_progress``) keeps a long job from being redelivered under it;
- success: every follow-on event was published (with a deterministic ``Nats-Msg-Id``) before the ack;
- ``PermanentError``: dead letter with the reason, then ``term``;
- anything else: ``nak`` with the configured back-off (never a bare nak), and a dead letter once the
  deliveries run out;
- the server's max-deliveries advisory (deliveries ran out without any answer, e.g. the process was
  killed each time) is captured in a stream and turned into a dead letter carrying the original message.

SIGTERM stops fetching, lets in-flight work finish (up to ``drain_timeout``), then flushes and closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import Counter
from typing import Any

import nats.errors
import nats.js.errors
from beamflow.common import metrics, subjects
from beamflow.common.bus import connect, ensure_consumer, ensure_streams, publish_event
from beamflow.common.bus_auth import client_auth
from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import NatsUnavailable, PermanentError
from beamflow.common.events import Event, OriginalMessage, ScanFailed, parse_event
from beamflow.common.health import HealthServer
from beamflow.common.logs import ContextLogger
from beamflow.common.service import Context, Handler, Service
from beamflow.common.telemetry import extract, tracer
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger(__name__)
#: How often each consumer's lag is read for the ``beamflow.consumer.pending`` gauge.
LAG_INTERVAL_SECONDS = 15.0

FETCH_TIMEOUT = 1.0
MAX_BATCH = 64


class Runtime:
    """Runs one service against one NATS server until ``stop`` is called."""

    def __init__(
        self,
        service: Service,
        config: BeamflowConfig,
        nats_url: str,
        health_port: int | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.nats_url = nats_url
        self.stats: Counter[str] = Counter()
        self._health = (
            HealthServer(self._status, config.telemetry.health_host, health_port, metrics=metrics.render)
            if health_port is not None
            else None
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._slots = asyncio.Semaphore(config.delivery.concurrency)
        self._loops: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._ready = False

    # -- public surface for handlers' helpers and background tasks -------------------------------------

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("the runtime is not started")
        return self._js

    @property
    def nc(self) -> Client:
        if self._nc is None:
            raise RuntimeError("the runtime is not started")
        return self._nc

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health else None

    @property
    def stopping(self) -> asyncio.Event:
        return self._stopping

    async def publish(self, event: Event, timeout: float = 5.0) -> None:
        """Publish with the event's deterministic message id and the current trace context."""
        if self._js is None:
            raise NatsUnavailable(f"not connected to NATS at {self.nats_url} yet")
        await publish_event(self._js, event, self.nats_url, timeout)
        self.stats[f"published.{event.stage}"] += 1

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.service.accounts is not None:
            from beamflow.common.credentials import require_credentials

            await require_credentials(self.config, self.service.accounts(self.config), self.service.name)
        if self.service.needs_bus_at_start:
            await self._connect()
            await self._provision_and_consume()
            self._start_background()
        else:
            self._start_background()
            self._loops.append(asyncio.create_task(self._connect_when_possible(), name="connect"))
        if self._health is not None:
            await self._health.start()
        self._ready = True
        log.info(
            "service started",
            extra={"service_name": self.service.name, "nats": self.nats_url, "health_port": self.health_port},
        )

    async def _connect(self) -> None:
        auth = client_auth(self.config)
        self._nc = await connect(self.nats_url, self.config.nats, name=f"beamflow-{self.service.name}", auth=auth)
        self._js = self._nc.jetstream()

    async def _connect_when_possible(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._connect()
                await self._provision_and_consume()
                return
            except Exception as exc:
                log.warning("NATS not reachable yet; working offline", extra={"error": repr(exc)})
                await asyncio.sleep(self.config.nats.reconnect_time_wait.total_seconds())

    def _start_background(self) -> None:
        for task in self.service.background:
            self._background.append(asyncio.create_task(self._supervise(task), name=f"bg-{self.service.name}"))

    async def _provision_and_consume(self) -> None:
        js = self.js
        await ensure_streams(js, self.config)
        for handler in self.service.handlers:
            durable = self.consumer_name(handler)
            stream = handler.event.stream
            await ensure_consumer(js, stream, durable, handler.subject, self.config)
            advisory = f"{durable}-maxdeliver"
            await ensure_consumer(
                js,
                subjects.ADVISORY_STREAM,
                advisory,
                subjects.max_deliveries_advisory(stream, durable),
                self.config,
            )
            sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
            adv_sub = await js.pull_subscribe_bind(durable=advisory, stream=subjects.ADVISORY_STREAM)
            self._loops.append(asyncio.create_task(self._consume(handler, sub), name=f"consume-{durable}"))
            self._loops.append(asyncio.create_task(self._consume_advisories(handler, adv_sub), name=f"adv-{durable}"))
        if self.service.handlers:
            self._loops.append(asyncio.create_task(self._measure_lag(), name=f"lag-{self.service.name}"))

    async def _measure_lag(self) -> None:
        """Keep each consumer's unfinished messages (pending + in flight) in the lag gauge."""
        while not self._stopping.is_set():
            for handler in self.service.handlers:
                durable = self.consumer_name(handler)
                with contextlib.suppress(Exception):  # a scrape shows the last value; NATS may be away
                    info = await self.js.consumer_info(handler.event.stream, durable)
                    lag = (info.num_pending or 0) + (info.num_ack_pending or 0)
                    metrics.consumer_pending[(self.service.name, durable)] = lag
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), LAG_INTERVAL_SECONDS)

    def consumer_name(self, handler: Handler[Any]) -> str:
        return f"{self.service.name}-{handler.name}"

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start, run until ``stop()`` (or SIGTERM via the CLI), then shut down gracefully.

        A stop that comes while the service is still starting (waiting for a server that is not there
        yet, which it does forever) ends the start, so SIGTERM is never ignored.
        """
        starting = asyncio.create_task(self.start(), name="start")
        stop = asyncio.create_task(self._stopping.wait(), name="stop-requested")
        try:
            await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                log.info("stop requested while starting; giving up the start", extra={"nats": self.nats_url})
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            else:
                starting.result()  # a start that failed raises here
                await stop
        finally:
            stop.cancel()
            await self.shutdown()

    async def shutdown(self) -> None:
        self._stopping.set()
        self._ready = False
        for task in self._loops:
            if task.get_name() == "connect":  # may be blocked in a connect attempt that never ends
                task.cancel()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._inflight:
            log.info("draining in-flight messages", extra={"inflight": len(self._inflight)})
            _, pending = await asyncio.wait(self._inflight, timeout=self.config.delivery.drain_timeout.total_seconds())
            for task in pending:  # not acked: the server redelivers them to the next instance
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._health is not None:
            await self._health.stop()
        if self._nc is not None and not self._nc.is_closed:
            # Every message we took is acked, nak'ed or left for redelivery by now, and every publish was
            # awaited, so there is nothing to drain; nats-py's drain() can wait forever on the internal
            # queue of a pull subscription. Flush what is buffered (acks), then close.
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
            with contextlib.suppress(Exception):
                await self._nc.close()
        log.info("service stopped", extra={"service_name": self.service.name, **self.stats})

    async def _supervise(self, task: Any) -> None:
        try:
            await task(self)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task failed; stopping the service so it is restarted")
            self._stopping.set()

    def _status(self) -> dict[str, Any]:
        connected = self._nc is not None and self._nc.is_connected
        return {
            "service": self.service.name,
            "ready": self._ready and connected,
            "connected": connected,
            "inflight": len(self._inflight),
            "stats": dict(self.stats),
        }

    # -- consuming ----------------------------------------------------------------------------------------

    async def _take_slots(self) -> int:
        """Wait for one free slot, then take every other free one (up to a batch)."""
        await self._slots.acquire()
        taken = 1
        while taken < MAX_BATCH and not self._slots.locked():
            await self._slots.acquire()
            taken += 1
        return taken

    def _release(self, n: int) -> None:
        for _ in range(n):
            self._slots.release()

    async def _consume(self, handler: Handler[Any], sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            slots = await self._take_slots()
            try:
                msgs = await self._fetch(sub, slots)
            except BaseException:
                self._release(slots)
                raise
            self._release(slots - len(msgs))
            for msg in msgs:
                task = asyncio.create_task(self._handle_with_slot(handler, msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
        stop = asyncio.create_task(self._stopping.wait())
        fetch = asyncio.create_task(sub.fetch(batch, timeout=FETCH_TIMEOUT))
        done, _ = await asyncio.wait({stop, fetch}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if fetch not in done:
            fetch.cancel()
            with contextlib.suppress(BaseException):
                await fetch
            return []
        try:
            return fetch.result()
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.StaleConnectionError,
            nats.js.errors.APIError,
            nats.errors.Error,
        ) as exc:
            log.warning("fetch failed; retrying", extra={"error": repr(exc)})
            await asyncio.sleep(0.5)
            return []

    async def _handle_with_slot(self, handler: Handler[Any], msg: Msg) -> None:
        try:
            await self._handle(handler, msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Could not even ack/nak/dead-letter (NATS gone): the server redelivers after ack_wait.
            log.exception("message left for redelivery", extra={"subject": msg.subject})
        finally:
            self._slots.release()

    async def _handle(self, handler: Handler[Any], msg: Msg) -> None:
        meta = msg.metadata
        deliveries = meta.num_delivered or 1
        parent = extract(msg.headers)
        started = time.perf_counter()
        with tracer().start_as_current_span(
            f"{self.service.name} {handler.name}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "beamflow.deliveries": deliveries,
            },
        ) as span:
            heartbeat = asyncio.create_task(self._heartbeat(msg))
            labels = {"service": self.service.name, "stage": handler.event.stage, "beamline": "unknown"}
            try:
                event = parse_event(handler.event, msg.data)
                labels["beamline"] = event.beamline
                span.set_attribute("beamflow.scan_id", event.scan_id or "")
                span.set_attribute("beamflow.beamline", event.beamline)
                adapter = ContextLogger(
                    log,
                    {
                        "scan_id": event.scan_id,
                        "beamline": event.beamline,
                        "handler": self.consumer_name(handler),
                    },
                )
                ctx = Context(self, handler.publishes, msg.subject, deliveries, adapter)
                await handler.handle(ctx, event)
            except asyncio.CancelledError:
                raise
            except PermanentError as exc:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                await self._dead_letter(handler, msg, exc, permanent=True, deliveries=deliveries)
                await msg.term()
                self.stats["dead_lettered"] += 1
                self._measured(labels, "dead_lettered", started)
                return
            except Exception as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
                outcome = await self._retry_or_give_up(handler, msg, exc, deliveries)
                self._measured(labels, outcome, started)
                return
            finally:
                heartbeat.cancel()
            await msg.ack()
            self.stats["handled"] += 1
            span.set_attribute("beamflow.seconds", time.perf_counter() - started)
            self._measured(labels, "ok", started)

    def _measured(self, labels: dict[str, str], outcome: str, started: float) -> None:
        metrics.MESSAGES.add(1, {**labels, "outcome": outcome})
        metrics.HANDLER_SECONDS.record(
            time.perf_counter() - started, {"service": labels["service"], "stage": labels["stage"]}
        )

    async def _retry_or_give_up(self, handler: Handler[Any], msg: Msg, exc: Exception, deliveries: int) -> str:
        """Nak for a later retry, or dead-letter once deliveries run out; the outcome's metric label."""
        limit = self.config.delivery.max_deliver
        if deliveries >= limit:
            log.error("giving up", extra={"subject": msg.subject, "deliveries": deliveries, "error": str(exc)})
            await self._dead_letter(
                handler,
                msg,
                exc,
                permanent=False,
                deliveries=deliveries,
                reason=f"gave up after {deliveries} deliveries; last error: {exc}",
            )
            await msg.term()
            self.stats["dead_lettered"] += 1
            return "dead_lettered"
        backoff = self.config.delivery.backoff
        delay = backoff[min(deliveries - 1, len(backoff) - 1)].total_seconds() if backoff else 1.0
        log.warning(
            "will retry",
            extra={
                "subject": msg.subject,
                "deliveries": deliveries,
                "delay_s": delay,
                "error": str(exc),
                "error_type": type(exc).__name__,
            },
        )
        await msg.nak(delay=delay)
        self.stats["retried"] += 1
        return "retried"

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(self.config.delivery.ack_wait.total_seconds() / 3, 0.1)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    # -- dead letters ------------------------------------------------------------------------------------

    async def _dead_letter(
        self,
        handler: Handler[Any],
        msg: Msg,
        exc: BaseException,
        permanent: bool,
        deliveries: int,
        reason: str | None = None,
    ) -> None:
        meta = msg.metadata
        original = original_message(msg.subject, msg.data, msg.headers, meta.stream, meta.sequence.stream)
        await self.publish(
            dead_letter(
                self.service.name,
                self.consumer_name(handler),
                original,
                reason or str(exc),
                type(exc).__name__,
                permanent,
                deliveries,
            )
        )
        log.error(
            "dead-lettered",
            extra={"subject": msg.subject, "reason": reason or str(exc), "error_type": type(exc).__name__},
        )

    async def _consume_advisories(self, handler: Handler[Any], sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            for msg in await self._fetch(sub, 16):
                try:
                    await self._advisory_to_dead_letter(handler, msg)
                    await msg.ack()
                except Exception as exc:
                    log.warning("advisory not converted yet; will retry", extra={"error": repr(exc)})
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=2)

    async def _advisory_to_dead_letter(self, handler: Handler[Any], msg: Msg) -> None:
        advisory = json.loads(msg.data)
        stream, seq = advisory["stream"], int(advisory["stream_seq"])
        deliveries = int(advisory.get("deliveries", 0))
        try:
            raw = await self.js.get_msg(stream, seq)
            original = original_message(raw.subject or "", raw.data or b"", raw.headers, stream, seq)
        except nats.js.errors.NotFoundError:
            original = OriginalMessage(subject="", data="", stream=stream, stream_seq=seq)
        reason = (
            f"no acknowledgement after {deliveries} deliveries: the handler crashed, hung past ack_wait "
            "or was killed each time; see the service's logs around these deliveries"
        )
        await self.publish(
            dead_letter(
                self.service.name,
                self.consumer_name(handler),
                original,
                reason,
                "MaxDeliveriesExceeded",
                False,
                deliveries,
            )
        )
        self.stats["dead_lettered"] += 1


def original_message(
    subject: str, data: bytes, headers: dict[str, str] | None, stream: str | None, seq: int | None
) -> OriginalMessage:
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(data).decode(), "base64"
    return OriginalMessage(
        subject=subject,
        data=text,
        data_encoding=encoding,
        headers=dict(headers or {}),
        stream=stream,
        stream_seq=seq,
    )


def dead_letter(
    service: str,
    consumer: str,
    original: OriginalMessage,
    reason: str,
    error_type: str,
    permanent: bool,
    deliveries: int,
) -> ScanFailed:
    scan_id: str | None = None
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        candidate = json.loads(original.data).get("scan_id") if original.data_encoding == "utf-8" else None
        scan_id = candidate if isinstance(candidate, str) else None
    beamline = subjects.beamline_of(original.subject) or "unknown"
    if not subjects.is_token(beamline):
        beamline = "unknown"
    return ScanFailed(
        scan_id=scan_id,
        beamline=beamline,
        service=service,
        consumer=consumer,
        reason=reason,
        error_type=error_type,
        permanent=permanent,
        deliveries=deliveries,
        original=original,
    )
