"""The work of a transfer task: each item planned (a file, or a folder walked recursively), then copied.

An item's source is looked up first: missing or refused it is a source error (``FILE_NOT_FOUND``,
``PERMISSION_DENIED``: fatal, or skipped under ``skip_source_errors``); a folder without ``recursive`` is
``IS_A_DIRECTORY``, a file with ``recursive`` ``NOT_A_DIRECTORY`` (``recursive`` left out: either is fine); a
destination on a read-only collection or outside the collection is ``PERMISSION_DENIED``. A recursive item copies
the folder tree in name order, creating destination folders; ``filter_rules`` (first matching rule wins) and
``recursive_symlinks`` (``ignore`` skips links, ``copy``/``keep`` copy what they point to) shape the walk, and
``delete_destination_extra`` removes what the destination folder has beyond the source's. Each file goes through
``copier.copy_file``; sync-skipped files count in ``files_skipped``, copied ones in ``files_transferred`` and the
successful transfers list.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from beamflow.globus_local.copier import (
    CopyOptions,
    Fault,
    copy_file,
    describe,
    fault_details,
    fault_from_os_error,
    read_only_fault,
)
from beamflow.globus_local.documents import FilterRule, TransferItem, TransferSpec
from beamflow.globus_local.records import Skipped, Steps, Task
from beamflow.globus_local.storage import Collection, join_path


@dataclass(frozen=True)
class _Entry:
    """One piece of a recursive item: a folder to create or a file to copy."""

    is_dir: bool
    source: Path
    destination: Path
    source_path: str
    destination_path: str


def _excluded(rules: tuple[FilterRule, ...], name: str, is_dir: bool) -> bool:
    for rule in rules:
        if rule.type is not None and rule.type != ("dir" if is_dir else "file"):
            continue
        if fnmatch.fnmatchcase(name, rule.name):
            return rule.method == "exclude"
    return False


def run_transfer(steps: Steps, task: Task, spec: TransferSpec) -> None:
    for item in spec.items:
        with steps.lock:
            task.subtasks_total += 1
        planned = steps.attempt(task, partial(_plan_item, steps, task, spec, item))
        if isinstance(planned, Skipped):
            continue
        with steps.lock:
            task.subtasks_succeeded += 1
        copied: set[str] = set()
        skipped_before = len(task.skipped_errors)
        for entry in planned:
            _transfer_entry(steps, task, spec, item, entry)
            copied.add(spec.destination.globus_path_of(entry.destination))
        if spec.delete_destination_extra and planned and planned[0].is_dir:
            if len(task.skipped_errors) > skipped_before:
                with steps.lock:
                    details = f"Skipped deleting extra files under {item.destination_path}"
                    task.add_event("DELETE_DESTINATION_EXTRA_SKIPPED", details, details, is_error=False)
            else:
                _delete_extra(steps, task, spec.destination, planned[0].destination, copied)


def _plan_item(steps: Steps, task: Task, spec: TransferSpec, item: TransferItem) -> list[_Entry]:
    source, destination = spec.source, spec.destination

    def source_error(exc: OSError) -> Fault:
        return fault_from_os_error(
            exc,
            source,
            operation="transfer",
            command="MLST",
            path=item.source_path,
            source_side=True,
            destination_path=item.destination_path,
        )

    try:
        source_local = source.local_path(item.source_path)
        info = source_local.stat()
    except OSError as exc:
        raise source_error(exc) from exc
    try:
        destination_local = destination.local_path(item.destination_path)
    except OSError as exc:
        raise fault_from_os_error(
            exc, destination, operation="transfer", command="STOR", path=item.destination_path, source_side=False
        ) from exc
    if not destination.writable:
        raise read_only_fault(destination, item.destination_path, "STOR")
    is_dir = stat.S_ISDIR(info.st_mode)
    if is_dir and item.recursive is False:
        details = fault_details(source, "transfer", "RETR", item.source_path, "Is a directory (recursive not set)")
        raise Fault("IS_A_DIRECTORY", describe("IS_A_DIRECTORY"), details)
    if not is_dir and item.recursive:
        details = fault_details(source, "transfer", "MLSD", item.source_path, "Not a directory (recursive set)")
        raise Fault("NOT_A_DIRECTORY", describe("NOT_A_DIRECTORY"), details)
    top = _Entry(is_dir, source_local, destination_local, item.source_path, item.destination_path)
    if not is_dir:
        entries = [top]
    else:
        try:
            entries = [top, *_walk(spec, source, top)]
        except OSError as exc:
            raise source_error(exc) from exc
    with steps.lock:
        task.files += sum(not entry.is_dir for entry in entries)
        task.directories += sum(entry.is_dir for entry in entries)
        task.subtasks_total += len(entries)
    return entries


def _walk(spec: TransferSpec, source: Collection, folder: _Entry) -> Iterator[_Entry]:
    with os.scandir(folder.source) as scan:
        children = sorted(scan, key=lambda child: child.name)
    for child in children:
        source_path = join_path(folder.source_path, child.name)
        local = Path(child.path)
        if child.is_symlink():
            if spec.recursive_symlinks == "ignore":
                continue
            # Following a link that leaves the collection is refused like any such path.
            local = source.local_path(source_path)
        is_dir = child.is_dir(follow_symlinks=True)
        if _excluded(spec.filter_rules, child.name, is_dir):
            continue
        entry = _Entry(
            is_dir,
            local,
            folder.destination / child.name,
            source_path,
            join_path(folder.destination_path, child.name),
        )
        yield entry
        if is_dir:
            yield from _walk(spec, source, entry)


def _transfer_entry(steps: Steps, task: Task, spec: TransferSpec, item: TransferItem, entry: _Entry) -> None:
    source, destination = spec.source, spec.destination

    def source_error(exc: OSError) -> Fault:
        return fault_from_os_error(
            exc,
            source,
            operation="transfer",
            command="RETR",
            path=entry.source_path,
            source_side=True,
            destination_path=entry.destination_path,
            is_directory=entry.is_dir,
        )

    def destination_error(exc: OSError) -> Fault:
        return fault_from_os_error(
            exc, destination, operation="transfer", command="STOR", path=entry.destination_path, source_side=False
        )

    if entry.is_dir:

        def make_folder() -> None:
            try:
                steps.commit(task, lambda: entry.destination.mkdir(parents=True, exist_ok=True))
            except OSError as exc:
                raise destination_error(exc) from exc

        result: object = steps.attempt(task, make_folder, fail_on_quota=spec.fail_on_quota_errors)
        with steps.lock:
            if not isinstance(result, Skipped):
                task.subtasks_succeeded += 1
        return
    options = CopyOptions(
        sync_level=spec.sync_level,
        verify_checksum=spec.verify_checksum,
        preserve_timestamp=spec.preserve_timestamp,
        checksum_algorithm=item.checksum_algorithm,
        external_checksum=item.external_checksum if not item.recursive else None,
    )
    outcome = steps.attempt(
        task,
        lambda: copy_file(
            entry.source,
            entry.destination,
            options,
            tag=task.task_id[:8],
            checkpoint=lambda: steps.checkpoint(task),
            commit=lambda action: steps.commit(task, action),
            on_source_error=source_error,
            on_destination_error=destination_error,
        ),
        fail_on_quota=spec.fail_on_quota_errors,
    )
    with steps.lock:
        if isinstance(outcome, Skipped):
            return
        task.subtasks_succeeded += 1
        task.bytes_checksummed += outcome.bytes_checksummed
        if outcome.skipped:
            task.files_skipped += 1
            return
        task.files_transferred += 1
        task.bytes_transferred += outcome.bytes_transferred
        verified = spec.verify_checksum or options.external_checksum is not None
        task.successful_transfers.append(
            {
                "DATA_TYPE": "successful_transfer",
                "source_path": entry.source_path,
                "destination_path": entry.destination_path,
                "checksum": outcome.checksum if verified else None,
                "checksum_algorithm": (item.checksum_algorithm or "MD5") if verified else None,
                "dynamic": False,
                "size": outcome.size,
            }
        )


def _remove_extra(steps: Steps, task: Task, destination: Collection, local: Path, remove: Callable[[], None]) -> None:
    try:
        steps.commit(task, remove)
    except FileNotFoundError:
        return
    except OSError as exc:
        path = destination.globus_path_of(local)
        raise fault_from_os_error(
            exc, destination, operation="delete", command="DELE", path=path, source_side=False
        ) from exc


def _delete_extra(steps: Steps, task: Task, destination: Collection, root: Path, kept: set[str]) -> None:
    """delete_destination_extra: remove what the destination folder has and the source folder had not."""
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            local = Path(folder) / name
            if destination.globus_path_of(local) in kept:
                continue
            remove = local.rmdir if name in dirs and not local.is_symlink() else local.unlink
            steps.attempt(task, partial(_remove_extra, steps, task, destination, local, remove))
