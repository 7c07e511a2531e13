"""The record of one Globus task, the events it reports, and what the work on it may ask of the task engine.

``Task.document()`` is the Transfer API's task document: ``task_id``, ``type`` (``TRANSFER``/``DELETE``),
``status`` (``ACTIVE``/``INACTIVE``/``SUCCEEDED``/``FAILED``), ``nice_status`` (``"Queued"``/``"OK"`` or the
current error code while the task runs, ``None`` once it ended), ``fatal_error`` (``{"code", "description"}`` of
a failed task), ``label``, ``files``, ``files_transferred``, ``files_skipped``, ``directories``,
``bytes_transferred``, ``bytes_checksummed``, ``effective_bytes_per_second``, ``faults``, ``request_time``,
``completion_time``, ``deadline``, the source/destination collection ids and names, the submitted options and the
``subtasks_*`` counts. ``Event.document()`` is an entry of the task's event list.
"""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, TypeVar

from beamflow.globus_local.copier import Fault
from beamflow.globus_local.documents import DeleteSpec, TransferSpec
from beamflow.globus_local.storage import Collection
from beamflow.globus_local.wire import event_time, task_time, utc_now

RUNNING = ("ACTIVE", "INACTIVE")
T = TypeVar("T")


class Skipped:
    """Marks a piece of work that skip_source_errors skipped."""


SKIPPED = Skipped()


@dataclass(frozen=True)
class Event:
    code: str
    description: str
    details: str
    is_error: bool
    time: datetime.datetime

    def document(self) -> dict[str, Any]:
        return {
            "DATA_TYPE": "event",
            "code": self.code,
            "description": self.description,
            "details": self.details,
            "is_error": self.is_error,
            "time": event_time(self.time),
        }


@dataclass(frozen=True)
class Stall:
    code: str
    description: str
    inactive: bool


@dataclass
class Task:
    """One task's record; the engine changes it under its lock, ``document()`` is the Transfer API's view."""

    task_id: str
    type: str  # "TRANSFER" or "DELETE"
    owner_id: str
    submission_id: str
    spec: TransferSpec | DeleteSpec
    label: str | None
    deadline: datetime.datetime
    source: Collection
    destination: Collection | None
    request_time: datetime.datetime = field(default_factory=utc_now)
    status: str = "ACTIVE"
    nice_status: str | None = "Queued"
    nice_status_description: str | None = "Queued"
    is_ok: bool | None = True
    fatal_error: dict[str, str] | None = None
    completion_time: datetime.datetime | None = None
    files: int = 0
    directories: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    bytes_checksummed: int = 0
    faults: int = 0
    subtasks_total: int = 0
    subtasks_succeeded: int = 0
    subtasks_failed: int = 0
    subtasks_expired: int = 0
    subtasks_canceled: int = 0
    subtasks_skipped_errors: int = 0
    subtasks_retrying: int = 0
    events: list[Event] = field(default_factory=list)
    successful_transfers: list[dict[str, Any]] = field(default_factory=list)
    skipped_errors: list[dict[str, Any]] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    last_stall_event: float | None = None

    @property
    def running(self) -> bool:
        return self.status in RUNNING

    @property
    def collections(self) -> tuple[str, ...]:
        return (self.source.id,) if self.destination is None else (self.source.id, self.destination.id)

    @property
    def subtasks_pending(self) -> int:
        ended = (
            self.subtasks_succeeded
            + self.subtasks_failed
            + self.subtasks_expired
            + self.subtasks_canceled
            + self.subtasks_skipped_errors
        )
        return max(self.subtasks_total - ended, 0)

    def add_event(self, code: str, description: str, details: str = "", *, is_error: bool) -> None:
        self.events.append(Event(code, description, details, is_error, utc_now()))

    def document(self) -> dict[str, Any]:
        spec = self.spec
        transfer = spec if isinstance(spec, TransferSpec) else None
        elapsed = ((self.finished or time.monotonic()) - self.started) if self.started is not None else 0.0
        rate = int(self.bytes_transferred / elapsed) if elapsed > 0 else 0
        running = self.running
        destination = self.destination
        return {
            "DATA_TYPE": "task",
            "task_id": self.task_id,
            "type": self.type,
            "status": self.status,
            "label": self.label,
            "owner_id": self.owner_id,
            "username": _username(self.owner_id),
            "command": "API 0.10",
            "request_time": task_time(self.request_time),
            "completion_time": task_time(self.completion_time),
            "deadline": task_time(self.deadline),
            "source_endpoint": self.source.name,
            "source_endpoint_id": self.source.id,
            "source_endpoint_display_name": self.source.name,
            "destination_endpoint": destination.name if destination else None,
            "destination_endpoint_id": destination.id if destination else None,
            "destination_endpoint_display_name": destination.name if destination else None,
            "source_base_path": None,
            "destination_base_path": None,
            "sync_level": transfer.sync_level if transfer else None,
            "verify_checksum": transfer.verify_checksum if transfer else False,
            "preserve_timestamp": transfer.preserve_timestamp if transfer else False,
            "encrypt_data": transfer.encrypt_data if transfer else False,
            "delete_destination_extra": transfer.delete_destination_extra if transfer else False,
            "skip_source_errors": transfer.skip_source_errors if transfer else False,
            "fail_on_quota_errors": transfer.fail_on_quota_errors if transfer else False,
            "recursive_symlinks": transfer.recursive_symlinks if transfer else None,
            "filter_rules": _rules_document(transfer),
            "history_deleted": False,
            "is_paused": False,
            "canceled_by_admin": None,
            "canceled_by_admin_message": None,
            "fatal_error": dict(self.fatal_error) if self.fatal_error else None,
            "nice_status": self.nice_status if running else None,
            "nice_status_short_description": self.nice_status_description if running else None,
            "nice_status_details": None,
            "nice_status_expires_in": -1 if running else None,
            "is_ok": self.is_ok if running else None,
            "faults": self.faults,
            "files": self.files,
            "directories": self.directories,
            "symlinks": 0,
            "files_transferred": self.files_transferred,
            "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "bytes_checksummed": self.bytes_checksummed,
            "effective_bytes_per_second": rate,
            "subtasks_total": self.subtasks_total,
            "subtasks_pending": self.subtasks_pending if running else 0,
            "subtasks_retrying": self.subtasks_retrying if running else 0,
            "subtasks_succeeded": self.subtasks_succeeded,
            "subtasks_failed": self.subtasks_failed,
            "subtasks_expired": self.subtasks_expired,
            "subtasks_canceled": self.subtasks_canceled,
            "subtasks_skipped_errors": self.subtasks_skipped_errors,
        }


def _username(owner_id: str) -> str:
    """The deprecated ``username``: ``u_`` and the base32 of the identity id, as Globus derives it."""
    try:
        raw = uuid.UUID(owner_id).bytes
    except ValueError:
        return f"u_{owner_id}"
    return "u_" + base64.b32encode(raw).decode().lower().rstrip("=")


def _rules_document(transfer: TransferSpec | None) -> list[dict[str, Any]] | None:
    if transfer is None or not transfer.filter_rules:
        return None
    return [
        {"DATA_TYPE": "filter_rule", "method": rule.method, "name": rule.name, "type": rule.type}
        for rule in transfer.filter_rules
    ]


class Steps(Protocol):
    """What the transfer and delete work asks of the engine (``tasks.TaskEngine``) while it runs a task."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held while reading or changing a task record."""
        ...

    def checkpoint(self, task: Task) -> None:
        """Return when the task may do its next piece of work; raise ``TaskStopped`` when it must stop."""
        ...

    def commit(self, task: Task, action: Callable[[], None]) -> None:
        """Run a visible change (a rename, a deletion) only while the task still runs."""
        ...

    def attempt(self, task: Task, work: Callable[[], T], *, fail_on_quota: bool = False) -> T | Skipped:
        """Do one piece of work, ending or retrying the task on a ``Fault`` as Globus does."""
        ...

    def fail_now(self, task: Task, fault: Fault) -> NoReturn:
        """End the task with ``fault`` as its fatal error."""
        ...
