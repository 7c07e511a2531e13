"""The file work a Globus task does on the local disk, and how its failures are named in Globus's event codes.

``copy_file`` copies one file the way a transfer does: unless ``sync_level`` says the destination is already good
(0 it exists, 1 same size, 2 not older than the source, 3 same checksum), it writes a hidden temporary file next to
the destination, checks it against the source when ``verify_checksum`` asks, gives it the source's times when
``preserve_timestamp`` asks, and only then renames it over the destination -- through ``commit``, so the task
engine can refuse the rename once the task was cancelled or expired. ``checkpoint`` is called between chunks;
it raises to stop a copy (the temporary file is removed).

``fault_from_os_error`` maps what the OS said onto the codes Globus reports: ENOENT ``FILE_NOT_FOUND``,
EACCES/EPERM/EROFS ``PERMISSION_DENIED``, EISDIR ``IS_A_DIRECTORY``, ENOTDIR ``NOT_A_DIRECTORY``, ENOSPC
``NO_SPACE_LEFT``, EDQUOT ``QUOTA_EXCEEDED``, ENAMETOOLONG ``INVALID_PATH_NAME``, anything else
``ENDPOINT_ERROR`` (retried until the deadline, as Globus retries what it cannot classify).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from beamflow.globus_local.documents import new_hash
from beamflow.globus_local.storage import Collection, PathNotAllowed

CHUNK_BYTES = 1024 * 1024
PART_SUFFIX = ".globus-part"

# Codes that end a task at once (unless skip_source_errors covers them); the others are retried.
FATAL_CODES = frozenset(
    {
        "FILE_NOT_FOUND",
        "PERMISSION_DENIED",
        "IS_A_DIRECTORY",
        "NOT_A_DIRECTORY",
        "INVALID_PATH_NAME",
        "EXTERNAL_CHECKSUM_MISMATCH",
    }
)
# Source-side codes that skip_source_errors turns into a skipped path.
SKIPPABLE_CODES = frozenset({"FILE_NOT_FOUND", "PERMISSION_DENIED"})
_DESCRIPTIONS = {
    "FILE_NOT_FOUND": "No such file or directory",
    "PERMISSION_DENIED": "Permission denied",
    "IS_A_DIRECTORY": "Is a directory",
    "NOT_A_DIRECTORY": "Not a directory",
    "NO_SPACE_LEFT": "No space left on device",
    "QUOTA_EXCEEDED": "Disk quota exceeded",
    "INVALID_PATH_NAME": "Invalid path name",
    "VERIFY_CHECKSUM": "Checksum verification failed",
    "EXTERNAL_CHECKSUM_MISMATCH": "The file's checksum does not match the external checksum",
    "ENDPOINT_ERROR": "Error on the endpoint",
}
_ERRNO_CODES = {
    errno.ENOENT: "FILE_NOT_FOUND",
    errno.EACCES: "PERMISSION_DENIED",
    errno.EPERM: "PERMISSION_DENIED",
    errno.EROFS: "PERMISSION_DENIED",
    errno.EISDIR: "IS_A_DIRECTORY",
    errno.ENOTDIR: "NOT_A_DIRECTORY",
    errno.ENOSPC: "NO_SPACE_LEFT",
    errno.EDQUOT: "QUOTA_EXCEEDED",
    errno.ENAMETOOLONG: "INVALID_PATH_NAME",
}


class TaskStopped(Exception):
    """The task was cancelled or expired while work was in progress; nothing more may be written."""


class Fault(Exception):
    """A failure as a Globus event: ``code``, ``description``, ``details``; ``source_side`` for skippability."""

    def __init__(
        self,
        code: str,
        description: str,
        details: str,
        source_side: bool = False,
        *,
        path: str | None = None,
        destination_path: str | None = None,
        is_directory: bool = False,
    ) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details
        self.source_side = source_side
        # Where it happened, for the skipped_errors listing.
        self.path = path
        self.destination_path = destination_path
        self.is_directory = is_directory

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES

    @property
    def skippable(self) -> bool:
        return self.source_side and self.code in SKIPPABLE_CODES


def describe(code: str) -> str:
    return _DESCRIPTIONS.get(code, code.replace("_", " ").capitalize())


def fault_details(collection: Collection, operation: str, command: str, path: str, message: str) -> str:
    """Event details in the layout Globus uses: which endpoint, which file, which command, what it said."""
    return (
        f"Error ({operation})\nEndpoint: {collection.name} ({collection.id})\nServer: 127.0.0.1\n"
        f"File: {path}\nCommand: {command} {path}\nMessage: {message}\n"
    )


def fault_from_os_error(
    exc: OSError,
    collection: Collection,
    *,
    operation: str,
    command: str,
    path: str,
    source_side: bool,
    destination_path: str | None = None,
    is_directory: bool = False,
) -> Fault:
    if isinstance(exc, PathNotAllowed):
        code, message = "PERMISSION_DENIED", "Path not allowed"
    else:
        code = _ERRNO_CODES.get(exc.errno or 0, "ENDPOINT_ERROR")
        message = exc.strerror or str(exc)
    details = fault_details(collection, operation, command, path, message)
    return Fault(
        code,
        describe(code),
        details,
        source_side,
        path=path,
        destination_path=destination_path,
        is_directory=is_directory,
    )


def read_only_fault(collection: Collection, path: str, command: str) -> Fault:
    details = fault_details(collection, "transfer", command, path, "Path not allowed: the collection is read-only")
    return Fault("PERMISSION_DENIED", describe("PERMISSION_DENIED"), details)


@dataclass
class CopyOutcome:
    skipped: bool
    bytes_transferred: int = 0
    bytes_checksummed: int = 0
    checksum: str | None = None
    size: int = 0


def file_checksum(path: Path, algorithm: str | None, checkpoint: Callable[[], None]) -> str:
    digest = new_hash(algorithm)
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            checkpoint()
            digest.update(chunk)
    return str(digest.hexdigest())


@dataclass(frozen=True)
class CopyOptions:
    sync_level: int | None
    verify_checksum: bool
    preserve_timestamp: bool
    checksum_algorithm: str | None = None
    external_checksum: str | None = None


def part_path(destination: Path, tag: str) -> Path:
    return destination.with_name(f".{destination.name}.{tag}{PART_SUFFIX}")


def _in_sync(source: Path, source_info: os.stat_result, destination: Path, options: CopyOptions) -> tuple[bool, int]:
    """Whether ``sync_level`` lets the copy be skipped, and how many bytes deciding it checksummed."""
    if options.sync_level is None:
        return False, 0
    try:
        target = destination.stat()
    except FileNotFoundError:
        return False, 0
    if not stat.S_ISREG(target.st_mode):
        return False, 0
    if options.sync_level == 0:
        return True, 0
    if target.st_size != source_info.st_size:
        return False, 0
    if options.sync_level == 1:
        return True, 0
    if options.sync_level == 2:
        return int(target.st_mtime) >= int(source_info.st_mtime), 0
    same = file_checksum(source, options.checksum_algorithm, lambda: None) == file_checksum(
        destination, options.checksum_algorithm, lambda: None
    )
    return same, 2 * source_info.st_size


def copy_file(
    source: Path,
    destination: Path,
    options: CopyOptions,
    *,
    tag: str,
    checkpoint: Callable[[], None],
    commit: Callable[[Callable[[], None]], None],
    on_source_error: Callable[[OSError], Fault],
    on_destination_error: Callable[[OSError], Fault],
) -> CopyOutcome:
    """Copy one file (see the module docstring); raises ``Fault`` or ``TaskStopped``."""
    try:
        source_info = source.stat()
        if stat.S_ISDIR(source_info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(source))
        skip, checksummed = _in_sync(source, source_info, destination, options)
    except OSError as exc:
        raise on_source_error(exc) from exc
    if skip:
        return CopyOutcome(skipped=True, bytes_checksummed=checksummed, size=source_info.st_size)
    partial = part_path(destination, tag)
    hashing = options.verify_checksum or options.external_checksum is not None
    digest = new_hash(options.checksum_algorithm) if hashing else None
    written = 0
    try:
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            output = partial.open("wb")
        except OSError as exc:
            raise on_destination_error(exc) from exc
        with output:
            try:
                reader = source.open("rb")
            except OSError as exc:
                raise on_source_error(exc) from exc
            with reader:
                while True:
                    checkpoint()
                    try:
                        chunk = reader.read(CHUNK_BYTES)
                    except OSError as exc:
                        raise on_source_error(exc) from exc
                    if not chunk:
                        break
                    if digest is not None:
                        digest.update(chunk)
                    try:
                        output.write(chunk)
                    except OSError as exc:
                        raise on_destination_error(exc) from exc
                    written += len(chunk)
        source_sum = digest.hexdigest() if digest is not None else None
        checksummed += written if digest is not None else 0
        if options.external_checksum is not None and source_sum != options.external_checksum:
            message = f"{options.checksum_algorithm or 'MD5'} {source_sum} != {options.external_checksum}"
            raise Fault("EXTERNAL_CHECKSUM_MISMATCH", describe("EXTERNAL_CHECKSUM_MISMATCH"), message)
        if options.verify_checksum:
            try:
                written_sum = file_checksum(partial, options.checksum_algorithm, checkpoint)
            except OSError as exc:
                raise on_destination_error(exc) from exc
            checksummed += written
            if written_sum != source_sum:
                message = f"source {source_sum} != destination {written_sum}"
                raise Fault("VERIFY_CHECKSUM", describe("VERIFY_CHECKSUM"), message)
        try:
            if options.preserve_timestamp:
                os.utime(partial, ns=(source_info.st_atime_ns, source_info.st_mtime_ns))
            commit(lambda: os.replace(partial, destination))
        except OSError as exc:
            raise on_destination_error(exc) from exc
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return CopyOutcome(
        skipped=False, bytes_transferred=written, bytes_checksummed=checksummed, checksum=source_sum, size=written
    )
