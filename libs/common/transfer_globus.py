"""Globus transfers: a scan's files copied by a Globus Transfer task, followed by our own polling.

Either side may be a Globus endpoint (a collection and a root on it) or a filesystem endpoint that declares
its ``globus`` mount (the same folder as a collection sees it). The task asks Globus for checksum sync
(files already identical are skipped), checksum verification of every file, preserved timestamps and a
deadline. What makes a returned ``FileCopy`` trustworthy:

- Globus verified each file's checksum at the destination (``verify_checksum``), or the task fails;
- where a side is on this host, beamflow's own xxh3 checksum is recorded: the source's, taken before the
  task and checked unchanged (size and mtime) after it, or else the destination's, read after it. Between
  two Globus endpoints neither is readable here and the copy is recorded as Globus verified it
  (``algorithm: globus``, sizes from the destination's listing).

A FAILED task fails the step with Globus's reason (a missing source file is ``SourceMissing``, anything
else permanent); a task still running at its deadline, or INACTIVE past the endpoint's ``inactive_limit``,
is cancelled and the step retried later (``TransferTimedOut``). Polling starts at a quarter second and
doubles up to the endpoint's ``poll_interval``, so a short task costs few requests and a long one waits
no longer than that interval to be seen finished.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from beamflow.common.checksums import ALGORITHM, file_checksum
from beamflow.common.endpoints import (
    EndpointConfig,
    FilesystemEndpoint,
    GlobusEndpoint,
    check_relative,
    resolve_inside,
)
from beamflow.common.errors import (
    SourceChanged,
    SourceMissing,
    TransferFailed,
    TransferTimedOut,
    UnsupportedEndpoint,
    VerificationFailed,
)
from beamflow.common.events import FileCopy
from beamflow.common.globus_session import globus_errors, transfer_client
from beamflow.common.transfer import TransferResult

#: The algorithm recorded for a copy only Globus verified (neither side readable here).
GLOBUS_VERIFIED: Final = "globus"
FIRST_POLL_SECONDS: Final = 0.25


@dataclass(frozen=True)
class Side:
    """One end of a transfer as Globus sees it, and as this host sees it when it can."""

    name: str
    collection: UUID
    root: str
    local_root: Path | None

    def path(self, relpath: str) -> str:
        return posixpath.join(self.root, relpath)


def side_of(name: str, endpoint: EndpointConfig) -> Side:
    if isinstance(endpoint, GlobusEndpoint):
        return Side(name, endpoint.collection_id, endpoint.root, None)
    if isinstance(endpoint, FilesystemEndpoint) and endpoint.globus is not None:
        return Side(name, endpoint.globus.collection_id, endpoint.globus.path, endpoint.root)
    if isinstance(endpoint, FilesystemEndpoint):
        raise UnsupportedEndpoint(
            f"endpoint {name} is a folder without a Globus collection, so Globus cannot reach it: add "
            f"`globus: {{collection_id: ..., path: ...}}` (the folder as the collection sees it) to it"
        )
    raise UnsupportedEndpoint(f"Globus cannot copy to or from a {endpoint.kind} endpoint ({name})")


def _local_facts(root: Path, name: str, paths: list[str]) -> dict[str, tuple[int, float, str]]:
    """(size, mtime, checksum) of each file under a local root; SourceMissing names the first missing one."""
    facts = {}
    for relpath in paths:
        path = resolve_inside(root, relpath, name)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise SourceMissing(f"{relpath} is not on {name} ({path}); there is nothing to copy") from None
        digest, _ = file_checksum(path)
        facts[relpath] = (info.st_size, info.st_mtime, digest)
    return facts


def _unchanged(root: Path, name: str, facts: dict[str, tuple[int, float, str]]) -> None:
    for relpath, (size, mtime, _) in facts.items():
        info = os.stat(resolve_inside(root, relpath, name))
        if (info.st_size, info.st_mtime) != (size, mtime):
            raise SourceChanged(f"{relpath} on {name} changed while Globus copied it; the copy is made again")


class GlobusTransfer:
    """``TransferController`` through Globus. The Globus endpoint of the pair (the destination's if both are)
    gives the service account, the deadline and the polling limits."""

    def __init__(self) -> None:
        #: Requests made to Transfer for the latest task (submission id, submit, polls, events): the benchmark's.
        self.requests = 0

    async def transfer(
        self,
        source_name: str,
        source: EndpointConfig,
        destination_name: str,
        destination: EndpointConfig,
        paths: list[str],
    ) -> TransferResult:
        src, dst = side_of(source_name, source), side_of(destination_name, destination)
        account_name, account = (
            (destination_name, destination) if isinstance(destination, GlobusEndpoint) else (source_name, source)
        )
        assert isinstance(account, GlobusEndpoint)  # side_of refused pairs without one
        for relpath in paths:
            check_relative(relpath)
        facts = None
        if src.local_root is not None:
            facts = await asyncio.to_thread(_local_facts, src.local_root, source_name, paths)
        what = f"Globus transfer {source_name} -> {destination_name}"
        self.requests = 0
        client = transfer_client(account)
        deadline = datetime.now(UTC) + account.deadline
        task_id = await asyncio.to_thread(self._submit, client, account_name, src, dst, paths, deadline, what)
        document = await self._follow(client, account, account_name, task_id, what)
        if facts is not None and src.local_root is not None:
            await asyncio.to_thread(_unchanged, src.local_root, source_name, facts)
            files = [FileCopy(path=p, size=s, checksum=c, algorithm=ALGORITHM) for p, (s, _, c) in facts.items()]
        elif dst.local_root is not None:
            read = await asyncio.to_thread(_local_facts, dst.local_root, destination_name, paths)
            files = [FileCopy(path=p, size=s, checksum=c, algorithm=ALGORITHM) for p, (s, _, c) in read.items()]
        else:
            sizes = await asyncio.to_thread(self._sizes, client, account_name, dst, paths, what)
            files = [FileCopy(path=p, size=sizes[p], checksum="", algorithm=GLOBUS_VERIFIED) for p in paths]
        rate = document.get("effective_bytes_per_second")
        return TransferResult(
            files=files,
            copied_files=int(document.get("files_transferred") or 0),
            copied_bytes=int(document.get("bytes_transferred") or 0),
            external_id=task_id,
            rate_bytes_per_second=float(rate) if rate is not None else None,
        )

    def _submit(
        self,
        client: Any,
        account_name: str,
        src: Side,
        dst: Side,
        paths: list[str],
        deadline: datetime,
        what: str,
    ) -> str:
        import globus_sdk

        data = globus_sdk.TransferData(
            src.collection,
            dst.collection,
            label=f"beamflow {src.name} to {dst.name}"[:128],
            sync_level="checksum",
            verify_checksum=True,
            preserve_timestamp=True,
            deadline=deadline,
        )
        for relpath in paths:
            data.add_item(src.path(relpath), dst.path(relpath))
        with globus_errors(what, account_name):
            self.requests += 2  # the submission id, then the task
            return str(client.submit_transfer(data)["task_id"])

    async def _follow(
        self, client: Any, account: GlobusEndpoint, account_name: str, task_id: str, what: str
    ) -> dict[str, Any]:
        """The task's final document once it SUCCEEDED; raises for every other ending."""
        wait = FIRST_POLL_SECONDS
        give_up = time.monotonic() + account.deadline.total_seconds()
        inactive_since: float | None = None
        while True:
            document = await asyncio.to_thread(self._get_task, client, account_name, task_id, what)
            status = document.get("status")
            if status == "SUCCEEDED":
                return document
            if status == "FAILED":
                await asyncio.to_thread(self._raise_failure, client, account_name, task_id, document, what)
            now = time.monotonic()
            inactive_since = (inactive_since or now) if status == "INACTIVE" else None
            if inactive_since is not None and now - inactive_since > account.inactive_limit.total_seconds():
                await asyncio.to_thread(self._cancel, client, account_name, task_id, what)
                raise TransferTimedOut(
                    f"{what}: task {task_id} stayed INACTIVE ({document.get('nice_status')}) longer than "
                    f"{account.inactive_limit}; it was cancelled and the copy will be tried again"
                )
            if now > give_up:
                await asyncio.to_thread(self._cancel, client, account_name, task_id, what)
                raise TransferTimedOut(
                    f"{what}: task {task_id} was still {status} ({document.get('nice_status')}) at its deadline "
                    f"of {account.deadline}; it was cancelled and the copy will be tried again"
                )
            await asyncio.sleep(wait)
            wait = min(wait * 2, account.poll_interval.total_seconds())

    def _get_task(self, client: Any, account_name: str, task_id: str, what: str) -> dict[str, Any]:
        with globus_errors(what, account_name):
            self.requests += 1
            return dict(client.get_task(task_id).data)

    def _cancel(self, client: Any, account_name: str, task_id: str, what: str) -> None:
        with globus_errors(f"{what} (cancelling task {task_id})", account_name):
            self.requests += 1
            client.cancel_task(task_id)

    def _raise_failure(self, client: Any, account_name: str, task_id: str, document: dict[str, Any], what: str) -> None:
        fatal = document.get("fatal_error") or {}
        code, description = str(fatal.get("code") or "FAILED"), str(fatal.get("description") or "")
        if not description:
            with globus_errors(what, account_name):
                self.requests += 1
                events = list(client.task_event_list(task_id, limit=5))
            errors = [e for e in events if e.get("is_error")]
            if errors:
                code, description = str(errors[0].get("code")), str(errors[0].get("description"))
        said = f"{what}: task {task_id} FAILED with {code}" + (f" ({description})" if description else "")
        if code == "FILE_NOT_FOUND":
            raise SourceMissing(f"{said}; a file of the scan is not at the source")
        if code == "EXPIRED":
            raise TransferTimedOut(f"{said}; it ran past its deadline and will be tried again")
        if code in ("VERIFY_CHECKSUM", "CHECKSUM_MISMATCH"):
            raise VerificationFailed(f"{said}; the copy did not verify and will be made again")
        if code == "PERMISSION_DENIED":
            raise TransferFailed(
                f"{said}; grant endpoint {account_name}'s service account access to both paths, then replay"
            )
        raise TransferFailed(f"{said}; see the task in the Globus web app, fix the cause, then replay")

    def _sizes(self, client: Any, account_name: str, dst: Side, paths: list[str], what: str) -> dict[str, int]:
        """Each file's size in the destination's listing (one listing per folder)."""
        sizes: dict[str, int] = {}
        for folder in sorted({posixpath.dirname(p) for p in paths}):
            with globus_errors(what, account_name):
                self.requests += 1
                listing = client.operation_ls(dst.collection, path=dst.path(folder) if folder else dst.root)
            names = {entry["name"]: int(entry.get("size") or 0) for entry in listing if entry.get("type") == "file"}
            for relpath in paths:
                if posixpath.dirname(relpath) == folder:
                    if posixpath.basename(relpath) not in names:
                        raise VerificationFailed(f"{what}: {relpath} is not in the destination's listing")
                    sizes[relpath] = names[posixpath.basename(relpath)]
        return sizes
