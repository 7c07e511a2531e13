"""The ledger: for every scan, one record that says where it is, built from the events on the bus.

The record lives in the JetStream KV bucket ``LEDGER`` under the scan id, so ``beamflow status SCAN`` is
one key lookup however many scans there are. The ledger service folds every event into it (``fold``);
nothing else writes it. There is no second database: the streams hold the events, the bucket holds what
they add up to, and it can be rebuilt by replaying the streams through ``fold``.

Folding is idempotent: each record keeps the keys of the events already in it, so a redelivered or
replayed event changes nothing. Writes are compare-and-set on the key's revision, so two ledger replicas
folding events of one scan at once never lose either event.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Literal

from beamflow.common import subjects
from beamflow.common.events import (
    Event,
    FileCopy,
    RetentionHold,
    ScanAnalyzed,
    ScanArchived,
    ScanFailed,
    ScanFile,
    ScanIngested,
    ScanMoved,
    ScanNew,
    ScanPruned,
    utcnow,
)
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

ScanState = Literal["detected", "copying", "copied", "held", "pruned", "failed"]
SCAN_STATES: tuple[ScanState, ...] = ("detected", "copying", "copied", "held", "pruned", "failed")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CopyRecord(_Record):
    endpoint: str
    source_endpoint: str
    step: int
    files: list[FileCopy]
    verified_at: datetime
    copied: bool
    bytes: int
    seconds: float
    external_id: str | None = None
    rate_bytes_per_second: float | None = None


class HoldRecord(_Record):
    endpoint: str
    check_endpoint: str
    placed_at: datetime
    expires_at: datetime
    state: Literal["pending", "expired"]
    last_action: str
    files: list[FileCopy]


class PruneRecord(_Record):
    endpoint: str
    check_endpoint: str
    pruned_at: datetime
    files: list[str]
    freed_bytes: int


class FailureRecord(_Record):
    at: datetime
    service: str
    subject: str
    reason: str
    error_type: str
    permanent: bool
    deliveries: int


class HistoryEntry(_Record):
    at: datetime
    what: str
    detail: str = ""


class ScanRecord(_Record):
    scan_id: str
    beamline: str
    endpoint: str | None = None
    scan_path: str | None = None
    files: list[ScanFile] = Field(default_factory=list)
    detected_at: datetime | None = None
    export_controlled: bool = False
    copies: dict[str, CopyRecord] = Field(default_factory=dict)
    holds: dict[str, HoldRecord] = Field(default_factory=dict)
    prunes: dict[str, PruneRecord] = Field(default_factory=dict)
    failures: list[FailureRecord] = Field(default_factory=list)
    external_ids: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list, description="Things a service could not do fully, and why.")
    history: list[HistoryEntry] = Field(default_factory=list)
    applied: list[str] = Field(default_factory=list, description="Keys of the events folded in (idempotence).")
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def state(self) -> ScanState:
        """One word for the status table; the latest thing that happened wins, failures are sticky until
        something succeeds after them."""
        last_failure = max((f.at for f in self.failures), default=None)
        last_success = max(
            [c.verified_at for c in self.copies.values()] + [p.pruned_at for p in self.prunes.values()],
            default=None,
        )
        if last_failure is not None and (last_success is None or last_failure > last_success):
            return "failed"
        if self.prunes:
            return "pruned"
        if any(h.state == "pending" for h in self.holds.values()):
            return "held"
        if self.copies:
            return "copied"
        return "detected" if self.detected_at else "copying"

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def event_key(event: Event, subject: str) -> str:
    """What makes an event distinct in a record: its message id, and for holds also which subject it was."""
    if isinstance(event, RetentionHold) and subject.startswith(f"{subjects.HOLD}.{subjects.HOLD_EXPIRED}."):
        return f"expired:{event.msg_id()}"
    return event.msg_id()


def fold(record: ScanRecord | None, event: Event, subject: str) -> ScanRecord | None:
    """``record`` with ``event`` added, or None when the event is already in it (nothing to write)."""
    if event.scan_id is None:
        return None
    key = event_key(event, subject)
    if record is None:
        record = ScanRecord(scan_id=event.scan_id, beamline=event.beamline)
    elif key in record.applied:
        return None
    else:
        record = record.model_copy(deep=True)
    entry = _apply(record, event, subject)
    record.applied.append(key)
    record.history.append(entry)
    record.history.sort(key=lambda h: h.at)
    record.updated_at = utcnow()
    return record


def _apply(record: ScanRecord, event: Event, subject: str) -> HistoryEntry:
    at = event.occurred_at
    if isinstance(event, ScanNew):
        record.endpoint, record.scan_path = event.endpoint, event.scan_path
        record.files, record.detected_at = list(event.files), event.detected_at
        record.export_controlled = event.export_controlled
        return HistoryEntry(at=at, what="detected", detail=f"{len(event.files)} file(s) on {event.endpoint}")
    if isinstance(event, ScanMoved):
        record.copies[event.destination_endpoint] = CopyRecord(
            endpoint=event.destination_endpoint,
            source_endpoint=event.source_endpoint,
            step=event.step,
            files=list(event.files),
            verified_at=at,
            copied=event.copied,
            bytes=event.bytes,
            seconds=event.seconds,
            external_id=event.external_id,
            rate_bytes_per_second=event.rate_bytes_per_second,
        )
        if event.external_id:
            record.external_ids[f"transfer:{event.destination_endpoint}"] = event.external_id
        how = "copied and verified" if event.copied else "already held a verified copy"
        return HistoryEntry(at=at, what=f"copy {event.destination_endpoint}", detail=f"{how}, {event.bytes} bytes")
    if isinstance(event, RetentionHold):
        expired = subject.startswith(f"{subjects.HOLD}.{subjects.HOLD_EXPIRED}.")
        current = record.holds.get(event.endpoint)
        # A stale expiry (of a hold since extended) must not mark the newer hold expired.
        if expired and current is not None and current.expires_at > event.expires_at:
            return HistoryEntry(at=utcnow(), what=f"hold {event.endpoint}", detail="earlier hold expired (superseded)")
        record.holds[event.endpoint] = HoldRecord(
            endpoint=event.endpoint,
            check_endpoint=event.check_endpoint,
            placed_at=event.placed_at,
            expires_at=event.expires_at,
            state="expired" if expired else "pending",
            last_action=event.action,
            files=list(event.files),
        )
        if expired:
            return HistoryEntry(at=utcnow(), what=f"hold {event.endpoint}", detail="expired; handed to the pruner")
        return HistoryEntry(
            at=event.placed_at,
            what=f"hold {event.endpoint}",
            detail=f"{event.action}; expires {event.expires_at.isoformat()} (check copy: {event.check_endpoint})",
        )
    if isinstance(event, ScanPruned):
        record.prunes[event.endpoint] = PruneRecord(
            endpoint=event.endpoint,
            check_endpoint=event.check_endpoint,
            pruned_at=at,
            files=list(event.files),
            freed_bytes=event.freed_bytes,
        )
        hold = record.holds.get(event.endpoint)
        if hold is not None:
            hold.state = "expired"
        return HistoryEntry(
            at=at,
            what=f"pruned {event.endpoint}",
            detail=f"{event.freed_bytes} bytes freed; {event.check_endpoint} verified",
        )
    if isinstance(event, ScanFailed):
        record.failures.append(
            FailureRecord(
                at=at,
                service=event.service,
                subject=event.original.subject,
                reason=event.reason,
                error_type=event.error_type,
                permanent=event.permanent,
                deliveries=event.deliveries,
            )
        )
        return HistoryEntry(at=at, what=f"failed in {event.service}", detail=f"{event.error_type}: {event.reason}")
    if isinstance(event, ScanArchived):
        if event.files:
            # A verified bundle is a copy like any other: a retention rule can name the archive as its check.
            record.copies[event.archive_endpoint] = CopyRecord(
                endpoint=event.archive_endpoint,
                source_endpoint=event.source_endpoint,
                step=0,
                files=list(event.files),
                verified_at=at,
                copied=True,
                bytes=sum(f.size for f in event.files),
                seconds=0.0,
                external_id=event.bundle,
            )
        if event.external_id:
            record.external_ids[f"archive:{event.archive_endpoint}"] = event.external_id
        record.external_ids[f"bundle:{event.archive_endpoint}"] = event.bundle
        return HistoryEntry(at=at, what=f"archived {event.archive_endpoint}", detail=event.bundle)
    if isinstance(event, ScanAnalyzed):
        record.external_ids[f"job:{event.compute_site}"] = event.job_id
        return HistoryEntry(at=at, what=f"analyzed {event.compute_site}", detail=f"exit {event.exit_status}")
    if isinstance(event, ScanIngested):
        record.external_ids[f"catalog:{event.dataset_kind}"] = event.pid
        record.warnings += [f"catalog: {w}" for w in event.warnings if f"catalog: {w}" not in record.warnings]
        detail = event.pid + (f" ({len(event.warnings)} warning(s))" if event.warnings else "")
        return HistoryEntry(at=at, what=f"catalogued ({event.dataset_kind}, {event.action})", detail=detail)
    return HistoryEntry(at=at, what=event.event_type)


class Ledger:
    """Reads and writes scan records in the ``LEDGER`` bucket."""

    def __init__(self, kv: KeyValue, js: JetStreamContext) -> None:
        self.kv = kv
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext) -> Ledger:
        return cls(await js.key_value(subjects.LEDGER_BUCKET), js)

    async def get(self, scan_id: str) -> ScanRecord | None:
        try:
            entry = await self.kv.get(scan_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:  # an expired or deleted key reads as an empty entry with some settings
            return None
        return ScanRecord.model_validate_json(entry.value)

    async def record(self, event: Event, subject: str) -> ScanRecord | None:
        """Fold ``event`` into its scan's record (compare-and-set; retried when another writer won)."""
        if event.scan_id is None:
            return None
        while True:
            try:
                entry = await self.kv.get(event.scan_id)
                current = ScanRecord.model_validate_json(entry.value) if entry.value else None
                revision: int | None = entry.revision
            except KeyNotFoundError:
                current, revision = None, None
            updated = fold(current, event, subject)
            if updated is None:
                return current
            try:
                if revision is None:
                    await self.kv.create(event.scan_id, updated.to_json())
                else:
                    await self.kv.update(event.scan_id, updated.to_json(), last=revision)
                return updated
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0)  # another writer folded an event of this scan first: read it again

    async def put(self, record: ScanRecord) -> None:
        """Write a whole record (benchmarks and tests building a ledger without running every service)."""
        await self.kv.put(record.scan_id, record.to_json())

    async def all(self, beamline: str | None = None) -> list[ScanRecord]:
        """Every record of the bucket (for operations that must see every scan, e.g. archiving a proposal)."""
        return await self.recent(limit=None, beamline=beamline, window=None)

    async def recent(
        self,
        limit: int | None = 20,
        beamline: str | None = None,
        state: ScanState | None = None,
        window: int | None = 5000,
    ) -> list[ScanRecord]:
        """The most recently updated scans, newest first, read from the tail of the bucket's stream.

        Only the last ``window`` writes are looked at, so the cost does not grow with the ledger; a filter
        that matches nothing recent returns fewer rows rather than scanning everything.
        """
        stream = f"KV_{subjects.LEDGER_BUCKET}"
        info = await self.js.stream_info(stream)
        last = info.state.last_seq
        if info.state.messages == 0:
            return []
        start = info.state.first_seq if window is None else max(info.state.first_seq, last - window + 1)
        sub = await self.js.subscribe(
            f"$KV.{subjects.LEDGER_BUCKET}.>",
            stream=stream,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start),
        )
        latest: dict[str, ScanRecord] = {}
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except TimeoutError:
                    break
                if msg.data:
                    record = ScanRecord.model_validate_json(msg.data)
                    latest[record.scan_id] = record
                if msg.metadata.sequence.stream >= last or msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        rows = [
            r
            for r in latest.values()
            if (beamline is None or r.beamline == beamline) and (state is None or r.state == state)
        ]
        rows.sort(key=lambda r: r.updated_at, reverse=True)
        return rows if limit is None else rows[:limit]
