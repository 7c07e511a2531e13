"""Every NATS header name beamflow reads or writes, defined once."""

from __future__ import annotations

from typing import Final

#: JetStream de-duplication key; deterministic for every publish that may be retried.
MSG_ID: Final = "Nats-Msg-Id"
#: W3C trace context (OpenTelemetry propagation).
TRACEPARENT: Final = "traceparent"
#: The event's schema version, so a consumer can refuse a version it does not know without parsing.
SCHEMA_VERSION: Final = "Beamflow-Schema-Version"
#: The event type name (``scan.new``, ``scan.moved`` ...), for tools that read raw messages.
EVENT_TYPE: Final = "Beamflow-Event"
#: JetStream message schedules (retention holds): when, where to, and how long the fired message lives.
SCHEDULE: Final = "Nats-Schedule"
SCHEDULE_TARGET: Final = "Nats-Schedule-Target"
SCHEDULE_TTL: Final = "Nats-Schedule-TTL"
