"""Retention holds on the bus: place, look up, extend and release them.

A hold is a ``RetentionHold`` event published as a JetStream message schedule on
``hold.set.<beamline>.<scan_id>.<endpoint>``. At ``expires_at`` the server publishes the same body on
``hold.expired...`` (and removes the schedule), which is what the pruner consumes. Publishing the subject
again replaces the schedule, so extending is a new hold with a later time and releasing is a hold due now.
Everything survives restarts because it is stored in the ``HOLDS`` stream; no process keeps a timer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from beamflow.common import subjects
from beamflow.common.bus import publish_event
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import RetentionRule
from beamflow.common.errors import HoldNotFound
from beamflow.common.events import FileCopy, RetentionHold, utcnow
from beamflow.common.ledger import ScanRecord
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError


def ttl_text(period: timedelta) -> str:
    """A Nats-TTL value: whole seconds (the server has no day unit)."""
    return f"{max(1, int(period.total_seconds()))}s"


def new_hold(
    config: BeamflowConfig,
    scan_id: str,
    beamline: str,
    endpoint: str,
    rule: RetentionRule,
    files: list[FileCopy],
    now: datetime | None = None,
) -> RetentionHold:
    """The hold the mover places once ``rule.check_endpoint`` holds a verified copy of the scan."""
    placed = now or utcnow()
    return RetentionHold(
        scan_id=scan_id,
        beamline=beamline,
        endpoint=endpoint,
        check_endpoint=rule.check_endpoint,
        files=files,
        placed_at=placed,
        expires_at=placed + rule.keep_for,
        expired_kept_for=ttl_text(config.retention.expired_kept_for),
    )


async def pending(js: JetStreamContext, hold: RetentionHold) -> RetentionHold | None:
    """The hold now scheduled for the same scan and endpoint, or None once it fired (or never existed)."""
    try:
        msg = await js.get_last_msg(subjects.HOLDS_STREAM, hold.subject())
    except NotFoundError:
        return None
    return RetentionHold.model_validate_json(msg.data or b"")


async def is_needed(js: JetStreamContext, hold: RetentionHold) -> bool:
    """False when a hold pending on the bus already keeps the scan at least as long (e.g. an operator's
    extension, which a redelivered copy placing the default hold again must not shorten)."""
    current = await pending(js, hold)
    return current is None or current.expires_at < hold.expires_at


async def place_after_copy(
    js: JetStreamContext,
    publish: Callable[[RetentionHold], Awaitable[None]],
    config: BeamflowConfig,
    scan_id: str,
    beamline: str,
    holders: Iterable[str],
    verified_at: str,
    files: list[FileCopy],
) -> list[str]:
    """Place the holds a verified copy at ``verified_at`` makes possible: one for each endpoint in ``holders``
    (those holding the scan) whose retention rule names ``verified_at`` as its check endpoint. Used by the
    mover after each copy and by the archiver after each verified bundle. Returns the endpoints held."""
    placed: list[str] = []
    for name in sorted(set(holders)):
        rule = config.endpoints[name].retention if name in config.endpoints else None
        if rule is None or rule.check_endpoint != verified_at:
            continue
        hold = new_hold(config, scan_id, beamline, name, rule, files)
        if await is_needed(js, hold):
            await publish(hold)
            placed.append(name)
    return placed


def latest_hold(record: ScanRecord, endpoint: str | None) -> tuple[str, RetentionHold]:
    """The last hold the ledger knows for the scan (on ``endpoint``, or its only one), as an event."""
    if not record.holds:
        raise HoldNotFound(f"scan {record.scan_id} has no retention hold in the ledger; nothing to change")
    if endpoint is None:
        if len(record.holds) > 1:
            raise HoldNotFound(f"scan {record.scan_id} has holds on {sorted(record.holds)}; say which with --endpoint")
        endpoint = next(iter(record.holds))
    found = record.holds.get(endpoint)
    if found is None:
        raise HoldNotFound(f"scan {record.scan_id} has no hold on {endpoint!r} (holds: {sorted(record.holds)})")
    return endpoint, RetentionHold(
        scan_id=record.scan_id,
        beamline=record.beamline,
        endpoint=endpoint,
        check_endpoint=found.check_endpoint,
        files=found.files,
        placed_at=found.placed_at,
        expires_at=found.expires_at,
    )


async def reschedule(
    js: JetStreamContext, config: BeamflowConfig, hold: RetentionHold, expires_at: datetime, action: str
) -> RetentionHold:
    """Replace the hold's schedule: a later time extends it, now releases it (the pruner may act at once)."""
    # Validated anew (not model_copy) so the expiry is rounded up to the scheduler's whole seconds.
    updated = RetentionHold.model_validate(
        {
            **hold.model_dump(),
            "expires_at": expires_at,
            "action": action,
            "placed_at": utcnow(),
            "expired_kept_for": ttl_text(config.retention.expired_kept_for),
        }
    )
    await publish_event(js, updated, "the NATS server")
    return updated
