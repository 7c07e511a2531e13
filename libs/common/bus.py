"""Connecting to NATS with deliberate settings, and provisioning the streams every service relies on.

Provisioning is idempotent: every service creates what it needs at start (the Helm chart creates nothing),
and a second service or a restart finds the stream there and leaves it be, updating only what config may
change (replicas, ages). Three streams:

- ``SCANS``: every ``scan.<stage>.<beamline>`` event except dead letters; Limits retention, so several
  services can each keep a durable consumer on the same subjects.
- ``DEADLETTERS``: ``scan.failed.>``, kept long, for ``beamflow dlq``.
- ``ADVISORIES``: the server's max-deliveries advisories, captured in a stream because an advisory
  nobody is listening to at that moment is otherwise lost.
- ``HOLDS``: retention holds as message schedules (``hold.set...``) and the messages the server publishes
  when they expire (``hold.expired...``, with a TTL). No max age: a hold may be due in 180 days.

and the ``LEDGER`` key-value bucket (one key per scan, see ``beamflow.common.ledger``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any, Final, TypeVar

import nats
import nats.errors
from beamflow.common import headers as hdr
from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig, NatsConfig
from beamflow.common.errors import NatsUnavailable
from beamflow.common.events import Event
from beamflow.common.telemetry import inject
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)
T = TypeVar("T")


def server_urls(url: str) -> list[str]:
    """The servers named by ``url``: one URL, or several joined by commas (the nodes of a cluster).

    nats-py takes a list for several servers; a comma-joined string would reach it as one malformed URL.
    """
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError(f"no NATS server in {url!r}; give a URL such as nats://127.0.0.1:4222")
    return urls


async def connect(url: str, settings: NatsConfig, name: str, auth: Mapping[str, Any] | None = None) -> Client:
    """Connect, retrying on reconnect forever by default, and logging every state change.

    ``url`` may name several servers, comma-joined; the client tries them in turn and fails over. ``auth``
    is how this process proves who it is (``beamflow.common.bus_auth.client_auth``).
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": str(exc)})

    async def on_disconnect() -> None:
        log.warning("disconnected from nats", extra={"url": url})

    async def on_reconnect() -> None:
        log.info("reconnected to nats", extra={"url": url})

    return await nats.connect(
        server_urls(url),
        name=name,
        connect_timeout=settings.connect_timeout.total_seconds(),
        reconnect_time_wait=settings.reconnect_time_wait.total_seconds(),
        max_reconnect_attempts=settings.max_reconnect_attempts,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **(auth or {}),
    )


def event_headers(event: Event) -> dict[str, str]:
    """The headers every published event carries: its deterministic message id, schema version, type,
    its own extra headers (a hold's schedule) and the current trace context.

    ``publish_event`` uses it; so does anything that pipelines many events with ``js.publish_async``.
    """
    headers = {
        hdr.MSG_ID: event.msg_id(),
        hdr.SCHEMA_VERSION: str(event.schema_version),
        hdr.EVENT_TYPE: event.event_type,
        **event.extra_headers(),
    }
    return inject(headers)


async def publish_event(js: JetStreamContext, event: Event, where: str, timeout: float = 5.0) -> None:
    """Store ``event`` in its stream with its deterministic message id and the current trace context.

    Raises ``NatsUnavailable`` for every client error (no stream yet, timeout, connection lost): a publish
    that timed out may still have been stored, which the message id makes harmless to retry.
    """
    headers = event_headers(event)
    try:
        await js.publish(event.subject(), event.to_json(), timeout=timeout, stream=event.stream, headers=headers)
    except nats.errors.Error as exc:  # every client error, JetStream's included
        raise NatsUnavailable(f"could not publish {event.event_type} to NATS at {where}: {exc!r}") from exc


def stream_configs(config: BeamflowConfig) -> list[StreamConfig]:
    d = config.delivery

    def stream(name: str, filters: list[str], **own: Any) -> StreamConfig:
        """A file-backed stream with the settings every beamflow stream shares; ``own`` holds what is its own."""
        return StreamConfig(
            name=name,
            subjects=filters,
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=d.duplicate_window.total_seconds(),
            num_replicas=config.nats.replicas,
            **own,
        )

    events_age = d.event_max_age.total_seconds()
    return [
        stream(
            subjects.SCANS_STREAM,
            [subjects.stage_filter(stage) for stage in subjects.SCAN_STAGES],
            max_age=events_age,
            discard=DiscardPolicy.OLD,
        ),
        stream(
            subjects.DEAD_LETTER_STREAM,
            [subjects.stage_filter(subjects.FAILED)],
            max_age=d.dead_letter_max_age.total_seconds(),
        ),
        stream(subjects.HOLDS_STREAM, [f"{subjects.HOLD}.>"], allow_msg_schedules=True, allow_msg_ttl=True),
        stream(subjects.ARCHIVE_STREAM, [f"{subjects.ARCHIVE}.>"], max_age=events_age, allow_msg_schedules=True),
        stream(subjects.FLIGHT_STREAM, [f"{subjects.FLIGHT}.>"], max_age=events_age, allow_msg_schedules=True),
        stream(
            subjects.ADVISORY_STREAM,
            [f"{subjects.MAX_DELIVERIES_ADVISORY_PREFIX}.>"],
            max_age=timedelta(days=7).total_seconds(),
        ),
    ]


async def ensure_streams(js: JetStreamContext, config: BeamflowConfig) -> None:
    for wanted in stream_configs(config):
        await _patiently(f"stream {wanted.name}", partial(_ensure_stream, js, wanted))
    await _patiently(f"bucket {subjects.LEDGER_BUCKET}", lambda: ensure_ledger_bucket(js, config))
    jobs = "beamflow analysis jobs that run now, by scan and analysis"
    await _patiently(f"bucket {subjects.JOBS_BUCKET}", lambda: ensure_bucket(js, config, subjects.JOBS_BUCKET, jobs))


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    assert wanted.name is not None
    try:
        info = await js.stream_info(wanted.name)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("created stream", extra={"stream": wanted.name})
        return
    if _settings(info.config) != _settings(wanted):
        await js.update_stream(wanted)
        log.info("updated stream", extra={"stream": wanted.name})


#: Waits between attempts to provision a stream or consumer whose replicas are still electing a leader.
PROVISION_WAITS: Final = (0.5, 1.0, 2.0, 4.0, 8.0)


async def _patiently(what: str, provision: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent provisioning step, again while the server answers "no leader yet" or "peer offline".

    Creating a replicated stream or consumer waits for its first election, which can outlast one API
    request on a busy cluster; asking again with the same settings is safe (it finds what was made). A node
    that is restarting, or whose heartbeat the meta leader missed on a loaded machine, is "offline" for a few
    seconds, and placing a replicated stream fails meanwhile: that passes too.
    """
    for wait in (*PROVISION_WAITS, None):
        try:
            return await provision()
        except (nats.errors.TimeoutError, APIError) as exc:
            unanswered = isinstance(exc, nats.errors.TimeoutError | ServiceUnavailableError)
            if not unanswered and not _is_waiting_for_peers(exc):
                raise
            if wait is None:
                raise NatsUnavailable(
                    f"{what}: JetStream did not answer after {len(PROVISION_WAITS) + 1} attempts ({exc!r}); "
                    "a replicated stream needs a majority of its nodes up: check that the cluster's nodes run"
                ) from exc
            log.warning("provisioning waits for JetStream", extra={"what": what, "retry_in_s": wait})
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


#: JetStream's error code for a replicated stream or consumer that has too few nodes to be placed on.
NO_SUITABLE_PEERS: Final = 10005


def _is_waiting_for_peers(exc: Exception) -> bool:
    """True when placement failed only because a node is offline, which a restart or a missed heartbeat
    makes so for seconds; "no suitable peers" for any other reason (more replicas than nodes) is a config error."""
    return isinstance(exc, APIError) and exc.err_code == NO_SUITABLE_PEERS and "offline" in (exc.description or "")


def _settings(stream: StreamConfig) -> tuple[object, ...]:
    """The stream settings our config decides; anything else the server fills in is left alone."""
    return (
        stream.num_replicas,
        stream.max_age or 0,
        stream.duplicate_window,
        sorted(stream.subjects or []),
        bool(stream.allow_msg_schedules),
        bool(stream.allow_msg_ttl),
    )


async def ensure_ledger_bucket(js: JetStreamContext, config: BeamflowConfig) -> KeyValue:
    """The ledger's KV bucket: one key per scan, latest value only (the event streams keep the history)."""
    return await ensure_bucket(js, config, subjects.LEDGER_BUCKET, "beamflow ledger: where every scan is, by scan id")


async def ensure_bucket(js: JetStreamContext, config: BeamflowConfig, bucket: str, description: str) -> KeyValue:
    """A KV bucket holding the latest value per key, replicated as configured; found if it exists."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    kv = await js.create_key_value(
        KeyValueConfig(
            bucket=bucket,
            description=description,
            history=1,
            storage=StorageType.FILE,
            replicas=config.nats.replicas,
        )
    )
    log.info("created key-value bucket", extra={"bucket": bucket})
    return kv


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subject: str,
    config: BeamflowConfig,
    max_deliver: int | None = None,
) -> None:
    """Create or update a durable pull consumer; replicas of one service share it."""
    await _patiently(
        f"consumer {durable} on {stream}",
        lambda: _ensure_consumer(js, stream, durable, filter_subject, config, max_deliver),
    )


async def _ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subject: str,
    config: BeamflowConfig,
    max_deliver: int | None,
) -> None:
    d = config.delivery
    wanted = ConsumerConfig(
        durable_name=durable,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=d.ack_wait.total_seconds(),
        max_deliver=max_deliver if max_deliver is not None else d.max_deliver,
        max_ack_pending=max(1000, d.concurrency * 4),
        num_replicas=config.nats.replicas,
    )
    try:
        info = await js.consumer_info(stream, durable)
    except NotFoundError:
        await js.add_consumer(stream, wanted)
        log.info("created consumer", extra={"stream": stream, "consumer": durable})
        return
    c = info.config
    if (c.ack_wait, c.max_deliver, c.filter_subject) != (
        wanted.ack_wait,
        wanted.max_deliver,
        wanted.filter_subject,
    ):
        await js.add_consumer(stream, wanted)  # add with the same durable name updates it
        log.info("updated consumer", extra={"stream": stream, "consumer": durable})
