"""Subject names and stream names, defined once.

Every scan subject is ``scan.<stage>.<beamline>`` so consumers can filter by beamline and operators can
read a subject and know what it carries. Beamline names are single subject tokens.
"""

from __future__ import annotations

import re
from typing import Final

SCANS_STREAM: Final = "SCANS"
DEAD_LETTER_STREAM: Final = "DEADLETTERS"
ADVISORY_STREAM: Final = "ADVISORIES"
#: Retention holds: one scheduled message per (scan, endpoint) that fires when the hold expires.
HOLDS_STREAM: Final = "HOLDS"
#: The ledger: one key per scan in this JetStream KV bucket.
LEDGER_BUCKET: Final = "LEDGER"
#: Analysis jobs that run now: one key per (scan, analysis), so ``beamflow job cancel`` can reach them.
JOBS_BUCKET: Final = "ANALYSIS_JOBS"
#: Archive requests: an operator's ``beamflow archive`` and (later) end-of-cycle schedules.
ARCHIVE_STREAM: Final = "ARCHIVES"
ARCHIVE: Final = "archive"
ARCHIVE_REQUEST: Final = "request"
ARCHIVE_SCHEDULE: Final = "schedule"
#: Flight checks: ``flight.schedule.<bl>`` (the repeating schedule), ``flight.run.<bl>`` (run one now),
#: ``flight.result.<bl>`` (how it went).
FLIGHT_STREAM: Final = "FLIGHT"
FLIGHT: Final = "flight"

HOLD: Final = "hold"
#: ``hold.set.<beamline>.<scan_id>.<endpoint>``: the pending hold (a message schedule; replaced to extend).
HOLD_SET: Final = "set"
#: ``hold.expired.<beamline>.<scan_id>.<endpoint>``: the server publishes the hold here when it expires.
HOLD_EXPIRED: Final = "expired"

NEW: Final = "new"
MOVED: Final = "moved"
FAILED: Final = "failed"
ARCHIVED: Final = "archived"
ANALYZED: Final = "analyzed"
INGESTED: Final = "ingested"
PRUNED: Final = "pruned"

#: Stages carried by the SCANS stream (dead letters live in their own stream).
SCAN_STAGES: Final = (NEW, MOVED, ARCHIVED, ANALYZED, INGESTED, PRUNED)

MAX_DELIVERIES_ADVISORY_PREFIX: Final = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


def is_token(name: str) -> bool:
    """True if ``name`` can stand as one subject token (no dots, spaces or wildcards)."""
    return bool(_TOKEN.match(name))


def scan_subject(stage: str, beamline: str) -> str:
    return f"scan.{stage}.{beamline}"


def stage_filter(stage: str) -> str:
    """The filter matching ``stage`` events of every beamline."""
    return f"scan.{stage}.>"


def beamline_of(subject: str) -> str | None:
    """The beamline token of a ``scan.<stage>.<beamline>`` or ``hold.<kind>.<beamline>...`` subject, else None."""
    parts = subject.split(".")
    if len(parts) >= 3 and parts[0] in ("scan", HOLD):
        return parts[2]
    return None


def hold_subject(kind: str, beamline: str, scan_id: str, endpoint: str) -> str:
    return f"{HOLD}.{kind}.{beamline}.{scan_id}.{endpoint}"


def hold_filter(kind: str) -> str:
    return f"{HOLD}.{kind}.>"


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    return f"{MAX_DELIVERIES_ADVISORY_PREFIX}.{stream}.{consumer}"


def archive_request_subject(beamline: str) -> str:
    return f"{ARCHIVE}.{ARCHIVE_REQUEST}.{beamline}"


def archive_schedule_subject(beamline: str, cycle: str) -> str:
    return f"{ARCHIVE}.{ARCHIVE_SCHEDULE}.{beamline}.{cycle}"


def flight_subject(kind: str, beamline: str) -> str:
    """``flight.<kind>.<beamline>``; kind is "schedule", "run" or "result"."""
    return f"{FLIGHT}.{kind}.{beamline}"
