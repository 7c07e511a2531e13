"""Connecting to NATS with deliberate settings, and provisioning the streams every service relies on.

Provisioning is idempotent: every service creates what it needs at start (the Helm chart creates nothing),
and a second service or a restart finds the stream there and leaves it be, updating only what config may
change (replicas, ages). Three streams:

- ``SCANS``: every ``scan.<stage>.<beamline>`` event except dead letters; Limits retention, so several
  services can each keep a durable consumer on the same subjects.
- ``DEADLETTERS``: ``scan.failed.>``, kept long, for ``beamflow dlq``.
- ``ADVISORIES``: the server's max-deliveries advisories, captured in a stream because an advisory
  nobody is listening to at that moment is otherwise lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import nats
from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig, NatsConfig
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)


async def connect(url: str, settings: NatsConfig, name: str) -> Client:
    """Connect, retrying on reconnect forever by default, and logging every state change."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", extra={"error": str(exc)})

    async def on_disconnect() -> None:
        log.warning("disconnected from nats", extra={"url": url})

    async def on_reconnect() -> None:
        log.info("reconnected to nats", extra={"url": url})

    return await nats.connect(
        url,
        name=name,
        connect_timeout=settings.connect_timeout.total_seconds(),
        reconnect_time_wait=settings.reconnect_time_wait.total_seconds(),
        max_reconnect_attempts=settings.max_reconnect_attempts,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def stream_configs(config: BeamflowConfig) -> list[StreamConfig]:
    d = config.delivery
    replicas = config.nats.replicas
    return [
        StreamConfig(
            name=subjects.SCANS_STREAM,
            subjects=[subjects.stage_filter(stage) for stage in subjects.SCAN_STAGES],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=d.event_max_age.total_seconds(),
            duplicate_window=d.duplicate_window.total_seconds(),
            num_replicas=replicas,
            discard=DiscardPolicy.OLD,
        ),
        StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            subjects=[subjects.stage_filter(subjects.FAILED)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=d.dead_letter_max_age.total_seconds(),
            duplicate_window=d.duplicate_window.total_seconds(),
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.ADVISORY_STREAM,
            subjects=[f"{subjects.MAX_DELIVERIES_ADVISORY_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=timedelta(days=7).total_seconds(),
            duplicate_window=d.duplicate_window.total_seconds(),
            num_replicas=replicas,
        ),
    ]


async def ensure_streams(js: JetStreamContext, config: BeamflowConfig) -> None:
    for wanted in stream_configs(config):
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except NotFoundError:
            await js.add_stream(wanted)
            log.info("created stream", extra={"stream": wanted.name})
            continue
        current = info.config
        if (
            current.num_replicas,
            current.max_age,
            current.duplicate_window,
            sorted(current.subjects or []),
        ) != (wanted.num_replicas, wanted.max_age, wanted.duplicate_window, sorted(wanted.subjects or [])):
            await js.update_stream(wanted)
            log.info("updated stream", extra={"stream": wanted.name})


async def ensure_consumer(
    js: JetStreamContext,
    stream: str,
    durable: str,
    filter_subject: str,
    config: BeamflowConfig,
    max_deliver: int | None = None,
) -> None:
    """Create or update a durable pull consumer; replicas of one service share it."""
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
