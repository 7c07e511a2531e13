"""The task engine of the Globus stand-in: transfer and delete tasks run in background threads on the local disk.

A task is ``ACTIVE`` from submission (``nice_status`` ``"Queued"`` until its thread starts, ``"OK"`` while it
works) and ends ``SUCCEEDED`` (``nice_status`` ``None``, a ``SUCCEEDED`` event) or ``FAILED`` with ``fatal_error``
``{"code", "description"}`` taken from the fatal event, as the Transfer API reports it:

* ``FILE_NOT_FOUND`` / ``PERMISSION_DENIED`` on the source end the task at once -- unless ``skip_source_errors``,
  which skips the path (a ``SKIPPED_ERRORS`` event, listed by ``skipped_errors``) and goes on;
* ``PERMISSION_DENIED`` on the destination (a collection added ``writable=False``, a path leaving the collection,
  or the OS refusing with EACCES/EPERM/EROFS), ``IS_A_DIRECTORY``, ``NOT_A_DIRECTORY``, ``INVALID_PATH_NAME`` and
  ``EXTERNAL_CHECKSUM_MISMATCH`` end it too;
* anything else (``ENDPOINT_ERROR``, ``VERIFY_CHECKSUM``, ``NO_SPACE_LEFT``/``QUOTA_EXCEEDED`` unless
  ``fail_on_quota_errors``) is an error event, ``nice_status`` becomes its code, ``faults`` grows, and the work is
  retried every ``retry_interval`` seconds until it succeeds or the deadline passes;
* past its ``deadline`` a task ends with ``EXPIRED``; ``cancel`` ends it with ``CANCELED``.

Events (``event_list``, newest first) are ``{"DATA_TYPE": "event", "code", "description", "details",
"is_error", "time"}``. ``stall(collection_id)`` makes every task touching the collection wait before its next
piece of work, adding a ``CONNECT_FAILED`` error event (or the code given) every ``retry_interval`` seconds, with
``nice_status`` showing it and ``is_ok`` false; ``inactive=True`` shows the task as ``INACTIVE`` meanwhile (Globus's
state for expired collection credentials). It goes on when ``unstall`` is called, or fails when cancelled or
expired. Renames and deletions happen under the engine's lock after checking the task still runs, so nothing is
written once a cancel has been answered.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from beamflow.globus_local.copier import Fault, TaskStopped, fault_details
from beamflow.globus_local.deletes import run_delete
from beamflow.globus_local.documents import DeleteSpec, TransferSpec
from beamflow.globus_local.records import SKIPPED, Skipped, Stall, Task
from beamflow.globus_local.transfers import run_transfer
from beamflow.globus_local.wire import event_time, task_time, utc_now

log = logging.getLogger(__name__)

DEFAULT_RETRY_INTERVAL = 1.0
QUOTA_CODES = frozenset({"NO_SPACE_LEFT", "QUOTA_EXCEEDED"})
T = TypeVar("T")


class TaskEngine:
    """Submits, runs, cancels and describes tasks; thread-safe. ``close`` stops every worker thread."""

    def __init__(self, *, retry_interval: float = DEFAULT_RETRY_INTERVAL) -> None:
        self.retry_interval = retry_interval
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._tasks: dict[str, Task] = {}
        self._by_submission: dict[tuple[str, str], str] = {}
        self._stalls: dict[str, Stall] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- submission and inspection --

    def submit(self, spec: TransferSpec | DeleteSpec, owner_id: str) -> tuple[Task, bool]:
        """The task for a checked document, and whether it existed already (same submission id: same task)."""
        with self.lock:
            known = self._by_submission.get((owner_id, spec.submission_id))
            if known is not None:
                return self._tasks[known], True
            if isinstance(spec, TransferSpec):
                task = Task(
                    str(uuid.uuid4()),
                    "TRANSFER",
                    owner_id,
                    spec.submission_id,
                    spec,
                    spec.label,
                    spec.deadline,
                    spec.source,
                    spec.destination,
                )
            else:
                task = Task(
                    str(uuid.uuid4()),
                    "DELETE",
                    owner_id,
                    spec.submission_id,
                    spec,
                    spec.label,
                    spec.deadline,
                    spec.endpoint,
                    None,
                )
            self._tasks[task.task_id] = task
            self._by_submission[(owner_id, spec.submission_id)] = task.task_id
            thread = threading.Thread(target=self._run, args=(task,), name=f"globus-task-{task.task_id}", daemon=True)
            self._threads = [alive for alive in self._threads if alive.is_alive()] + [thread]
        thread.start()
        return task, False

    def get(self, task_id: str) -> Task | None:
        with self.lock:
            return self._tasks.get(task_id)

    def tasks(self) -> list[Task]:
        with self.lock:
            return list(self._tasks.values())

    def document(self, task: Task) -> dict[str, Any]:
        with self.lock:
            return task.document()

    def events(self, task: Task) -> list[dict[str, Any]]:
        with self.lock:
            return [event.document() for event in reversed(task.events)]

    def successful_transfers(self, task: Task) -> list[dict[str, Any]]:
        with self.lock:
            return list(task.successful_transfers)

    def skipped_errors(self, task: Task) -> list[dict[str, Any]]:
        with self.lock:
            return list(task.skipped_errors)

    def cancel(self, task: Task) -> bool:
        """End a running task with ``CANCELED``; ``False`` when it had already ended."""
        with self.lock:
            if not task.running:
                return False
            task.add_event("CANCELED", "The task was canceled", "Canceled on user request", is_error=False)
            pending = task.subtasks_pending
            task.subtasks_canceled += pending
            self._end(task, "FAILED", {"code": "CANCELED", "description": "The task was canceled"})
            return True

    # -- test hooks --

    def stall(
        self,
        collection_id: str,
        *,
        code: str = "CONNECT_FAILED",
        description: str = "Could not connect to the endpoint",
        inactive: bool = False,
    ) -> None:
        with self.lock:
            self._stalls[collection_id] = Stall(code, description, inactive)
            self._changed.notify_all()

    def unstall(self, collection_id: str | None = None) -> None:
        with self.lock:
            if collection_id is None:
                self._stalls.clear()
            else:
                self._stalls.pop(collection_id, None)
            self._changed.notify_all()

    def stalled_collections(self) -> set[str]:
        with self.lock:
            return set(self._stalls)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no task runs; ``False`` when some still ran at the timeout."""
        with self.lock:
            return self._changed.wait_for(lambda: not any(task.running for task in self._tasks.values()), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop every worker at its next step (tasks keep the state they had) and wait for the threads."""
        with self.lock:
            self._closed = True
            self._changed.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))

    # -- state changes (callers hold the lock) --

    def _end(self, task: Task, status: str, fatal: dict[str, str] | None) -> None:
        task.status = status
        task.fatal_error = fatal
        task.completion_time = utc_now()
        task.finished = time.monotonic()
        task.nice_status = task.nice_status_description = None
        task.subtasks_retrying = 0
        self._changed.notify_all()

    def _fail(self, task: Task, fault: Fault) -> None:
        if not task.running:
            return
        task.add_event(fault.code, fault.description, fault.details, is_error=True)
        task.subtasks_failed += 1
        self._end(task, "FAILED", {"code": fault.code, "description": fault.description})

    def _expire(self, task: Task) -> None:
        details = f"The task did not complete before its deadline {task_time(task.deadline)}"
        task.add_event("EXPIRED", "Task expired before completion", details, is_error=True)
        task.subtasks_expired += task.subtasks_pending
        self._end(task, "FAILED", {"code": "EXPIRED", "description": "Task expired before completion"})

    def _show_ok(self, task: Task) -> None:
        if task.running:
            task.status = "ACTIVE"
            task.nice_status = task.nice_status_description = "OK"
            task.is_ok = True
            task.subtasks_retrying = 0

    def _stall_for(self, task: Task) -> Stall | None:
        return next((self._stalls[cid] for cid in task.collections if cid in self._stalls), None)

    # -- the worker side --

    def checkpoint(self, task: Task) -> None:
        """Return when the task may do its next piece of work; raise ``TaskStopped`` when it must not."""
        with self.lock:
            while True:
                if self._closed or not task.running:
                    raise TaskStopped
                remaining = (task.deadline - utc_now()).total_seconds()
                if remaining <= 0:
                    self._expire(task)
                    raise TaskStopped
                stall = self._stall_for(task)
                if stall is None:
                    if task.last_stall_event is not None:
                        task.last_stall_event = None
                        self._show_ok(task)
                    return
                now = time.monotonic()
                if task.last_stall_event is None or now - task.last_stall_event >= self.retry_interval:
                    task.last_stall_event = now
                    details = fault_details(task.source, "connect", "CONNECT", "/", stall.description)
                    task.add_event(stall.code, stall.description, details, is_error=True)
                    task.faults += 1
                    task.nice_status, task.nice_status_description = stall.code, stall.description
                    task.is_ok = False
                    task.status = "INACTIVE" if stall.inactive else "ACTIVE"
                    self._changed.notify_all()
                self._changed.wait(min(remaining, self.retry_interval))

    def commit(self, task: Task, action: Callable[[], None]) -> None:
        """Run a visible change (a rename, a deletion) only while the task still runs."""
        with self.lock:
            if self._closed or not task.running:
                raise TaskStopped
            if utc_now() >= task.deadline:
                self._expire(task)
                raise TaskStopped
            action()

    def _wait_retry(self, task: Task) -> None:
        until = time.monotonic() + self.retry_interval
        with self.lock:
            while (left := until - time.monotonic()) > 0:
                if self._closed or not task.running:
                    raise TaskStopped
                self._changed.wait(left)

    def attempt(self, task: Task, work: Callable[[], T], *, fail_on_quota: bool = False) -> T | Skipped:
        """Do one piece of work, retrying what Globus retries; ``SKIPPED`` when skip_source_errors skipped it."""
        skip_source_errors = isinstance(task.spec, TransferSpec) and task.spec.skip_source_errors
        while True:
            self.checkpoint(task)
            try:
                result = work()
            except Fault as fault:
                with self.lock:
                    if not task.running:
                        raise TaskStopped from fault
                    if fault.skippable and skip_source_errors:
                        self._record_skip(task, fault)
                        return SKIPPED
                    if fault.fatal or (fail_on_quota and fault.code in QUOTA_CODES):
                        self._fail(task, fault)
                        raise TaskStopped from fault
                    task.add_event(fault.code, fault.description, fault.details, is_error=True)
                    task.faults += 1
                    task.subtasks_retrying = 1
                    task.nice_status, task.nice_status_description = fault.code, fault.description
                    task.is_ok = False
                self._wait_retry(task)
                continue
            with self.lock:
                if task.nice_status != "OK" and task.last_stall_event is None:
                    self._show_ok(task)
            return result

    def _record_skip(self, task: Task, fault: Fault) -> None:
        task.skipped_errors.append(
            {
                "DATA_TYPE": "skipped_error",
                "error_code": fault.code,
                "error_details": fault.details,
                "error_time": event_time(utc_now()),
                "source_path": fault.path,
                "destination_path": fault.destination_path,
                "is_directory": fault.is_directory,
                "is_symlink": False,
                "is_delete_destination_extra": False,
                "external_checksum": None,
                "checksum_algorithm": None,
            }
        )
        task.subtasks_skipped_errors += 1
        task.add_event("SKIPPED_ERRORS", "Skipped a path with a skippable error", fault.details, is_error=False)

    def _run(self, task: Task) -> None:
        with self.lock:
            task.started = time.monotonic()
        try:
            self.checkpoint(task)
            with self.lock:
                self._show_ok(task)
                task.add_event("STARTED", "Task started", "", is_error=False)
            if isinstance(task.spec, TransferSpec):
                run_transfer(self, task, task.spec)
            else:
                run_delete(self, task, task.spec)
            with self.lock:
                if task.running and not self._closed:
                    details = f"files={task.files} transferred={task.files_transferred} skipped={task.files_skipped}"
                    task.add_event("SUCCEEDED", "Task succeeded", details, is_error=False)
                    self._end(task, "SUCCEEDED", None)
        except TaskStopped:
            pass
        except Exception as exc:  # a bug in the stand-in: the task must still end
            log.exception("globus stand-in task %s crashed", task.task_id)
            with self.lock:
                if task.running:
                    self._fail(task, Fault("UNKNOWN", "Unknown error", f"{type(exc).__name__}: {exc}"))

    def fail_now(self, task: Task, fault: Fault) -> NoReturn:
        with self.lock:
            self._fail(task, fault)
        raise TaskStopped
