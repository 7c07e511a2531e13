"""The work of a delete task: each path on the collection removed, folders only with ``recursive``.

A missing path is ``FILE_NOT_FOUND`` (fatal) unless ``ignore_missing``; a folder without ``recursive`` is
``IS_A_DIRECTORY``; a read-only collection, a path outside the collection or the OS refusing is
``PERMISSION_DENIED``. ``interpret_globs`` expands ``*``, ``?`` and ``[...]`` in a path's last component. Folders
are emptied bottom-up; ``files`` and ``directories`` count what was deleted.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path

from beamflow.globus_local.copier import Fault, describe, fault_details, fault_from_os_error, read_only_fault
from beamflow.globus_local.documents import DeleteSpec
from beamflow.globus_local.records import Skipped, Steps, Task
from beamflow.globus_local.storage import join_path, path_parts

_GLOB_CHARS = frozenset("*?[")


def run_delete(steps: Steps, task: Task, spec: DeleteSpec) -> None:
    for path in spec.paths:
        with steps.lock:
            task.subtasks_total += 1
        targets = steps.attempt(task, partial(_plan_delete, spec, path))
        if isinstance(targets, Skipped):
            continue
        with steps.lock:
            task.subtasks_succeeded += 1
        for globus, local in targets:
            _delete_target(steps, task, spec, globus, local)


def _plan_delete(spec: DeleteSpec, path: str) -> list[tuple[str, Path]]:
    endpoint = spec.endpoint
    try:
        local = endpoint.local_path(path)
    except OSError as exc:
        raise fault_from_os_error(
            exc, endpoint, operation="delete", command="DELE", path=path, source_side=False
        ) from exc
    if not endpoint.writable:
        raise read_only_fault(endpoint, path, "DELE")
    name = local.name
    if not (spec.interpret_globs and _GLOB_CHARS & set(name)):
        return [(path, local)]
    parent = "/" + "/".join(path_parts(path)[:-1])
    try:
        names = sorted(child.name for child in local.parent.iterdir() if fnmatch.fnmatchcase(child.name, name))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise fault_from_os_error(
            exc, endpoint, operation="delete", command="MLSD", path=parent, source_side=False
        ) from exc
    if not names and not spec.ignore_missing:
        details = fault_details(endpoint, "delete", "DELE", path, f"No match for {path}")
        raise Fault("FILE_NOT_FOUND", describe("FILE_NOT_FOUND"), details)
    return [(join_path(parent, child), local.parent / child) for child in names]


def _delete_target(steps: Steps, task: Task, spec: DeleteSpec, path: str, local: Path) -> None:
    endpoint = spec.endpoint

    def delete_error(exc: OSError, command: str, shown: str) -> Fault:
        return fault_from_os_error(exc, endpoint, operation="delete", command=command, path=shown, source_side=False)

    def inspect() -> os.stat_result | None:
        try:
            return local.lstat()
        except FileNotFoundError as exc:
            if spec.ignore_missing:
                return None
            raise delete_error(exc, "DELE", path) from exc
        except OSError as exc:
            raise delete_error(exc, "DELE", path) from exc

    info = steps.attempt(task, inspect)
    if info is None or isinstance(info, Skipped):
        return
    if not stat.S_ISDIR(info.st_mode):
        _delete_one(steps, task, local, path, is_dir=False, on_error=delete_error)
        return
    if not spec.recursive:
        details = fault_details(endpoint, "delete", "RMD", path, "Is a directory (recursive not set)")
        steps.fail_now(task, Fault("IS_A_DIRECTORY", describe("IS_A_DIRECTORY"), details))
    for folder, dirs, files in os.walk(local, topdown=False):
        for name in files:
            child = Path(folder) / name
            _delete_one(steps, task, child, endpoint.globus_path_of(child), is_dir=False, on_error=delete_error)
        for name in dirs:
            child = Path(folder) / name
            is_dir = not child.is_symlink()
            _delete_one(steps, task, child, endpoint.globus_path_of(child), is_dir=is_dir, on_error=delete_error)
    _delete_one(steps, task, local, path, is_dir=True, on_error=delete_error)


def _delete_one(
    steps: Steps, task: Task, local: Path, path: str, *, is_dir: bool, on_error: Callable[[OSError, str, str], Fault]
) -> None:
    command = "RMD" if is_dir else "DELE"

    def delete() -> None:
        try:
            steps.commit(task, local.rmdir if is_dir else local.unlink)
        except FileNotFoundError:
            return  # gone already: what a retry of a half-done deletion finds
        except OSError as exc:
            raise on_error(exc, command, path) from exc

    with steps.lock:
        task.subtasks_total += 1
    steps.attempt(task, delete)
    with steps.lock:
        task.subtasks_succeeded += 1
        if is_dir:
            task.directories += 1
        else:
            task.files += 1
