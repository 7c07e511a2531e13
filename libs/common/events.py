"""The event contracts: one pydantic model per ``scan.<stage>`` subject, JSON on the wire.

Every event carries ``schema_version``; a consumer refuses a version it does not know (the message is
dead-lettered, never retried). Models forbid unknown fields so a producer's typo fails loudly at the first
consumer instead of being dropped silently. Each event knows its subject and its deterministic
``Nats-Msg-Id``, which is what makes a retried publish harmless.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from beamflow.common import headers as hdr
from beamflow.common import subjects
from beamflow.common.errors import InvalidEvent
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION: Literal[1] = 1


def _token(value: str) -> str:
    if not subjects.is_token(value):
        raise ValueError(f"{value!r} must be one subject token: letters, digits, '-' or '_'")
    return value


Token = Annotated[str, AfterValidator(_token)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def scan_id_for(beamline: str, endpoint: str, scan_path: str) -> str:
    """The stable id of a scan: the same beamline, endpoint and relative path always give the same id."""
    digest = hashlib.blake2b(f"{beamline}\0{endpoint}\0{scan_path}".encode(), digest_size=8).hexdigest()
    return f"{beamline}-{digest}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanFile(_Model):
    """A file of a scan as the watcher saw it: path relative to the endpoint root."""

    path: str
    size: int = Field(ge=0)
    mtime: float


class FileCopy(_Model):
    """A verified copy of one file: the checksum was computed while copying and checked at the destination."""

    path: str
    size: int = Field(ge=0)
    checksum: str
    algorithm: str


class Event(_Model):
    """Fields every scan event carries."""

    stage: ClassVar[str]
    #: The stream that stores this event type (the runtime publishes there and consumes from there).
    stream: ClassVar[str] = subjects.SCANS_STREAM

    schema_version: Literal[1] = SCHEMA_VERSION
    scan_id: str
    beamline: Token
    occurred_at: datetime = Field(default_factory=utcnow)

    @property
    def event_type(self) -> str:
        return f"scan.{self.stage}"

    def subject(self) -> str:
        return subjects.scan_subject(self.stage, self.beamline)

    @classmethod
    def subject_filter(cls) -> str:
        """Every subject events of this type are published on (a service's NATS user may publish there)."""
        return subjects.stage_filter(cls.stage)

    def msg_id(self) -> str:
        """Deterministic de-duplication key: a retried publish of the same outcome is dropped by the server."""
        return f"{self.scan_id}:{self.stage}"

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def extra_headers(self) -> dict[str, str]:
        """Headers beyond the ones every event gets (a hold's schedule); none by default."""
        return {}


class ScanNew(Event):
    """A scan finished writing at ``endpoint``; every file of it is listed."""

    stage: ClassVar[str] = subjects.NEW

    endpoint: Token
    scan_path: str = Field(description="The scan's key relative to the endpoint root (folder and stem).")
    files: list[ScanFile] = Field(min_length=1)
    detected_at: datetime = Field(description="When the last file of the scan was closed by the detector.")
    export_controlled: bool = False


class ScanMoved(Event):
    """One destination now holds a verified copy of every file of the scan."""

    stage: ClassVar[str] = subjects.MOVED

    source_endpoint: Token
    destination_endpoint: Token
    step: int = Field(ge=1, description="Position of this destination in the beamline's ordered list.")
    files: list[FileCopy] = Field(min_length=1)
    bytes: int = Field(ge=0)
    seconds: float = Field(ge=0)
    copied: bool = Field(description="False when the destination already held a verified copy.")
    detected_at: datetime | None = None
    external_id: str | None = Field(default=None, description="Transfer task id where the transport has one.")
    rate_bytes_per_second: float | None = Field(
        default=None, description="The transfer service's effective speed (Globus), when it reports one."
    )
    scan_path: str | None = Field(default=None, description="The scan's key, as in its scan.new.")
    export_controlled: bool = Field(default=False, description="Never sent out of the facility, never catalogued.")

    def msg_id(self) -> str:
        return f"{self.scan_id}:{self.stage}:{self.destination_endpoint}"


class OriginalMessage(_Model):
    """The message a dead letter is about, exactly as it was received (data as UTF-8 text when it is)."""

    subject: str
    data: str
    data_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = Field(default_factory=dict)
    stream: str | None = None
    stream_seq: int | None = None


class ScanFailed(Event):
    """A dead letter: a service gave up on a message. Carries the reason and the original message."""

    stage: ClassVar[str] = subjects.FAILED
    stream: ClassVar[str] = subjects.DEAD_LETTER_STREAM

    scan_id: str | None = None  # type: ignore[assignment]  # unknown when the original did not parse
    service: str
    consumer: str
    reason: str
    error_type: str
    permanent: bool
    deliveries: int = Field(ge=0)
    original: OriginalMessage

    def msg_id(self) -> str:
        if self.original.stream is not None and self.original.stream_seq is not None:
            return f"failed:{self.original.stream}:{self.original.stream_seq}:{self.consumer}"
        return f"failed:{self.consumer}:{hashlib.blake2b(self.original.data.encode(), digest_size=12).hexdigest()}"


class ScanArchived(Event):
    """The scan's files are in a verified archive bundle."""

    stage: ClassVar[str] = subjects.ARCHIVED

    archive_endpoint: Token
    source_endpoint: Token
    bundle: str = Field(description="The bundle's path in the archive: '<beamline>/raw/<proposal>/<name>'.")
    members: list[str] = Field(min_length=1)
    files: list[FileCopy] = Field(
        default_factory=list, description="The scan's members as verified in the bundle: size and checksum."
    )
    external_id: str | None = None

    def msg_id(self) -> str:
        return f"{self.scan_id}:{self.stage}:{self.bundle}"


class ScanAnalyzed(Event):
    """An analysis job ran for the scan and its outputs are back at ``output_endpoint``."""

    stage: ClassVar[str] = subjects.ANALYZED

    compute_site: Token
    job_id: str
    exit_status: int
    runtime_seconds: float = Field(ge=0)
    output_endpoint: Token
    outputs: list[FileCopy]
    analysis: str = Field(default="", description="The beamline's analysis name (its outputs' folder).")
    software: dict[str, str] = Field(default_factory=dict, description="What the job said it ran: name, version.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="The parameters the job reported.")

    def msg_id(self) -> str:
        return f"{self.scan_id}:{self.stage}:{self.compute_site}"


class ScanIngested(Event):
    """The catalog holds a record for the scan (or its derived data)."""

    stage: ClassVar[str] = subjects.INGESTED

    catalog: str
    pid: str
    dataset_kind: Literal["raw", "derived"]
    action: Literal["created", "updated"] = "created"
    warnings: list[str] = Field(default_factory=list, description="Metadata that could not be read, and why.")

    def msg_id(self) -> str:
        # A replay that updates the dataset is news (and is not dropped as a repeat of the creation).
        return f"{self.scan_id}:{self.stage}:{self.dataset_kind}:{self.action}"


class ScanPruned(Event):
    """Files of the scan were deleted from ``endpoint`` after the safety rule held."""

    stage: ClassVar[str] = subjects.PRUNED

    endpoint: Token
    check_endpoint: Token
    files: list[str]
    freed_bytes: int = Field(ge=0)

    def msg_id(self) -> str:
        return f"{self.scan_id}:{self.stage}:{self.endpoint}"


HoldAction = Literal["placed", "extended", "released"]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ArchiveRequested(Event):
    """Archive a beamline's verified copies now: one proposal (or all), one cycle (or all) not yet archived.

    Published by ``beamflow archive PROPOSAL [--cycle]`` on ``archive.request.<beamline>``; the archiver
    plans the bundles from the ledger's records and publishes one ``scan.archived`` per scan.
    """

    stage: ClassVar[str] = subjects.ARCHIVE
    stream: ClassVar[str] = subjects.ARCHIVE_STREAM

    scan_id: str | None = None  # type: ignore[assignment]  # a request is about many scans
    proposal: str | None = Field(default=None, description="Unset: every proposal with unarchived scans.")
    cycle: str | None = Field(default=None, description="'2026-1' or '2026-2'; unset: every cycle.")
    requested_by: str = "operator"

    @classmethod
    def subject_filter(cls) -> str:
        return f"{subjects.ARCHIVE}.{subjects.ARCHIVE_REQUEST}.*"

    def subject(self) -> str:
        return subjects.archive_request_subject(self.beamline)

    def msg_id(self) -> str:
        # Every request is a new intent (a re-run after fixing something must not be dropped as a repeat).
        return f"archive:{self.beamline}:{self.proposal}:{self.cycle}:{self.occurred_at.isoformat()}"


class ArchiveScheduled(Event):
    """An archive request the server publishes itself at ``due`` (a JetStream message schedule): the
    end-of-cycle archive of a beamline. Stored on ``archive.schedule.<beamline>.<cycle>``; at ``due`` the
    server publishes ``request`` on ``archive.request.<beamline>``. Placing it again only replaces it."""

    stage: ClassVar[str] = subjects.ARCHIVE
    stream: ClassVar[str] = subjects.ARCHIVE_STREAM

    scan_id: str | None = None  # type: ignore[assignment]
    cycle: str
    due: datetime
    request: ArchiveRequested

    @classmethod
    def subject_filter(cls) -> str:
        return f"{subjects.ARCHIVE}.{subjects.ARCHIVE_SCHEDULE}.>"

    def subject(self) -> str:
        return subjects.archive_schedule_subject(self.beamline, self.cycle)

    def msg_id(self) -> str:
        return f"archive-schedule:{self.beamline}:{self.cycle}"

    def to_json(self) -> bytes:
        # The server publishes the schedule's body as is: it must be the request the archiver consumes.
        return self.request.to_json()

    def extra_headers(self) -> dict[str, str]:
        return {
            hdr.SCHEDULE: f"@at {_rfc3339(self.due)}",
            hdr.SCHEDULE_TARGET: self.request.subject(),
        }


class FlightRequested(Event):
    """Run the beamline's flight check now: from ``beamflow flight-check BL``, or fired by its schedule."""

    stage: ClassVar[str] = subjects.FLIGHT
    stream: ClassVar[str] = subjects.FLIGHT_STREAM

    scan_id: str | None = None  # type: ignore[assignment]  # the test scan is made by the check
    requested_by: str = "schedule"

    @classmethod
    def subject_filter(cls) -> str:
        return subjects.flight_subject("run", "*")

    def subject(self) -> str:
        return subjects.flight_subject("run", self.beamline)

    def msg_id(self) -> str:
        return f"flight:{self.beamline}:{self.occurred_at.isoformat()}"


class FlightScheduled(Event):
    """The repeating schedule of a beamline's flight check: the server publishes ``request`` on
    ``flight.run.<beamline>`` every ``every`` (``@every``); placing it again replaces it."""

    stage: ClassVar[str] = subjects.FLIGHT
    stream: ClassVar[str] = subjects.FLIGHT_STREAM

    scan_id: str | None = None  # type: ignore[assignment]
    every: timedelta
    request: FlightRequested

    @classmethod
    def subject_filter(cls) -> str:
        return subjects.flight_subject("schedule", "*")

    def subject(self) -> str:
        return subjects.flight_subject("schedule", self.beamline)

    def msg_id(self) -> str:
        return f"flight-schedule:{self.beamline}:{int(self.every.total_seconds())}"

    def to_json(self) -> bytes:
        return self.request.to_json()

    def extra_headers(self) -> dict[str, str]:
        return {
            hdr.SCHEDULE: f"@every {max(1, int(self.every.total_seconds()))}s",
            hdr.SCHEDULE_TARGET: self.request.subject(),
        }


class FlightChecked(Event):
    """How a flight check went: which endpoints held a verified copy of the test scan in time, what failed."""

    stage: ClassVar[str] = subjects.FLIGHT
    stream: ClassVar[str] = subjects.FLIGHT_STREAM

    scan_id: str
    ok: bool
    seconds: float = Field(ge=0)
    verified: list[str] = Field(description="Endpoints that held a verified copy.")
    problems: list[str] = Field(default_factory=list)
    cleaned: list[str] = Field(default_factory=list, description="Endpoints the test files were removed from.")

    @classmethod
    def subject_filter(cls) -> str:
        return subjects.flight_subject("result", "*")

    def subject(self) -> str:
        return subjects.flight_subject("result", self.beamline)


class RetentionHold(Event):
    """The scan stays on ``endpoint`` until ``expires_at``; after that it may be pruned there, if the copy
    at ``check_endpoint`` (``files``, as verified) still checks out.

    Published on ``hold.set.<beamline>.<scan_id>.<endpoint>`` as a JetStream message schedule: the server
    re-publishes the same body on ``hold.expired...`` at ``expires_at`` (whole seconds), and publishing
    the same subject again replaces the schedule (extend, release). No timer runs in any of our processes.
    """

    stage: ClassVar[str] = subjects.HOLD
    stream: ClassVar[str] = subjects.HOLDS_STREAM

    endpoint: Token
    check_endpoint: Token
    files: list[FileCopy] = Field(min_length=1, description="The copy at check_endpoint as it was verified.")
    placed_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    action: HoldAction = "placed"
    expired_kept_for: str = Field(
        default="720h", description="Nats-TTL of the expiry message: how long it waits for a pruner."
    )

    @field_validator("expires_at")
    @classmethod
    def _whole_seconds(cls, value: datetime) -> datetime:
        # Schedules fire on whole seconds; rounding up means the hold never fires before it is due.
        if value.microsecond:
            value = value.replace(microsecond=0) + timedelta(seconds=1)
        return value

    @classmethod
    def subject_filter(cls) -> str:
        return subjects.hold_filter(subjects.HOLD_SET)

    def subject(self) -> str:
        return subjects.hold_subject(subjects.HOLD_SET, self.beamline, self.scan_id, self.endpoint)

    def expiry_subject(self) -> str:
        return subjects.hold_subject(subjects.HOLD_EXPIRED, self.beamline, self.scan_id, self.endpoint)

    def msg_id(self) -> str:
        if self.action == "placed":
            # The mover placing the hold again (a redelivered scan.new) is dropped by the server.
            return f"{self.scan_id}:hold:{self.endpoint}:placed"
        # An operator's extension or release is a new intent every time, even twice in one second.
        return f"{self.scan_id}:hold:{self.endpoint}:{self.action}:{self.placed_at.isoformat()}"

    def extra_headers(self) -> dict[str, str]:
        return {
            hdr.SCHEDULE: f"@at {_rfc3339(self.expires_at)}",
            hdr.SCHEDULE_TARGET: self.expiry_subject(),
            hdr.SCHEDULE_TTL: self.expired_kept_for,
        }


EVENT_TYPES: dict[str, type[Event]] = {
    model.stage: model
    for model in (ScanNew, ScanMoved, ScanFailed, ScanArchived, ScanAnalyzed, ScanIngested, ScanPruned)
}


E = TypeVar("E", bound=Event)


def parse_event(model: type[E], data: bytes) -> E:
    """Validate ``data`` as ``model``; any problem (bad JSON, wrong version, missing field) is InvalidEvent."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidEvent(f"{model.stage} event failed validation: {_summarize(exc)}") from exc


def _summarize(exc: ValidationError) -> str:
    parts: list[str] = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def describe_schema() -> dict[str, Any]:
    """JSON Schema of every event, for documentation and for other-language consumers."""
    return {f"scan.{stage}": model.model_json_schema() for stage, model in EVENT_TYPES.items()}
