"""Filesystem-to-filesystem transfer: copy, checksum in the same pass, fsync, verify, rename into place.

The order of steps is what makes a copy safe to trust:

1. stat the source; if the destination already has a file of that size whose checksum matches the
   source's, it is a verified copy and is not written again (idempotence);
2. stream the source into a hidden temporary file beside the destination, hashing each chunk as it passes;
3. fsync the temporary file;
4. stat the source again: if its size, mtime or inode moved, the copy is discarded (``SourceChanged``);
5. re-read the temporary file and compare checksum and size (``VerificationFailed`` otherwise);
6. set the source's mtime and rename over the final name; once every file of the scan is in place, fsync
   their folders (one sync per folder, not per file).

Only step 6 makes a file appear under its final name, so a crash or a full disk leaves at most a hidden
``.<name>.beamflow.part`` file, never a partial file that looks complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import functools
import os
from pathlib import Path

from beamflow.common.checksums import ALGORITHM, CHUNK_SIZE, file_checksum, new_hasher
from beamflow.common.endpoints import EndpointConfig, FilesystemEndpoint, resolve_inside
from beamflow.common.errors import (
    DestinationUnwritable,
    SourceChanged,
    SourceMissing,
    UnsupportedEndpoint,
    VerificationFailed,
)
from beamflow.common.events import FileCopy
from beamflow.common.transfer import TransferResult
from beamflow.common.writeback import EarlyWriteback

#: errno values that mean "this destination will not take the write" (retry later, then dead-letter).
_REFUSED = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}

TEMP_SUFFIX = ".beamflow.part"

# Copies run on their own small pool: the default pool (cores + 4 threads) lets many copies fight the event
# loop for the GIL, which measured slower on 2 cores than a single copy thread. Disk bandwidth, not
# parallelism, bounds a copy; a few threads let some copies fsync while another streams (4 measured best).
_COPY_THREADS = int(os.environ.get("BEAMFLOW_COPY_THREADS", "4"))
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _copy_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(_COPY_THREADS, thread_name_prefix="beamflow-copy")
    return _executor


def temp_name(dst: Path) -> Path:
    """The hidden name a copy is written under before it is verified and renamed into place.

    It is the same for every attempt at one file, so a copy killed half-way is simply overwritten by the
    next attempt (the message's redelivery owns the file now) and nothing has to scan the folder for
    leftovers.
    """
    return dst.parent / f".{dst.name}{TEMP_SUFFIX}"


def _refused(exc: OSError, where: Path) -> DestinationUnwritable:
    return DestinationUnwritable(
        f"destination refused the write at {where}: {exc.strerror or exc} (errno {exc.errno}); "
        "free space or fix permissions there; the source is untouched and the copy will be retried"
    )


def fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(
    source_root: Path,
    dest_root: Path,
    relpath: str,
    source_name: str = "source",
    dest_name: str = "destination",
) -> tuple[FileCopy, bool]:
    """Copy one file and verify it. Returns the verified copy and whether bytes were written."""
    copy, written, dst = _copy(source_root, dest_root, relpath, source_name, dest_name)
    if written:
        fsync_dir(dst.parent)
    return copy, written


def _copy(
    source_root: Path, dest_root: Path, relpath: str, source_name: str, dest_name: str
) -> tuple[FileCopy, bool, Path]:
    """``copy_file`` without the folder sync (the caller syncs each folder once), plus the final path."""
    src = resolve_inside(source_root, relpath, source_name)
    dst = resolve_inside(dest_root, relpath, dest_name)
    try:
        before = os.stat(src)
    except FileNotFoundError as exc:
        raise SourceMissing(
            f"{relpath} is not on {source_name} ({src}); it was moved or deleted before the copy"
        ) from exc

    present = _verified_digest(src, dst, before.st_size)
    if present is not None:
        return FileCopy(path=relpath, size=before.st_size, checksum=present, algorithm=ALGORITHM), False, dst

    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in _REFUSED:
            raise _refused(exc, dst.parent) from exc
        raise
    # Resolve again now that the folder exists: a symlinked folder created meanwhile must not lead out.
    dst = resolve_inside(dest_root, relpath, dest_name)
    tmp = temp_name(dst)
    try:
        digest, size = _stream_copy(src, tmp)
        after = os.stat(src)
        if (after.st_size, after.st_mtime_ns, after.st_ino) != (
            before.st_size,
            before.st_mtime_ns,
            before.st_ino,
        ) or size != before.st_size:
            raise SourceChanged(
                f"{relpath} changed on {source_name} while it was being copied "
                f"(size {before.st_size} -> {after.st_size}); the copy was discarded and will be retried"
            )
        check, check_size = file_checksum(tmp)
        if check != digest or check_size != size:
            raise VerificationFailed(
                f"{relpath}: the copy on {dest_name} does not match the source "
                f"({ALGORITHM} {check} != {digest}, {check_size} != {size} bytes); it was discarded"
            )
        os.utime(tmp, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(tmp, dst)
    except OSError as exc:
        _discard(tmp)
        if exc.errno in _REFUSED:
            raise _refused(exc, dst) from exc
        if isinstance(exc, FileNotFoundError) and not src.exists():
            raise SourceMissing(f"{relpath} disappeared from {source_name} during the copy") from exc
        raise
    except BaseException:
        _discard(tmp)
        raise
    return FileCopy(path=relpath, size=size, checksum=digest, algorithm=ALGORITHM), True, dst


def _verified_digest(src: Path, dst: Path, size: int) -> str | None:
    """The digest of ``dst`` if it already is a copy of ``src`` (same size and checksum), else None."""
    try:
        if not dst.is_file() or dst.stat().st_size != size:
            return None
    except OSError:
        return None
    digest = file_checksum(dst)[0]
    return digest if file_checksum(src)[0] == digest else None


def _stream_copy(src: Path, tmp: Path) -> tuple[str, int]:
    hasher = new_hasher()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    total = 0
    with src.open("rb", buffering=0) as reader:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        writeback = EarlyWriteback(fd)
        try:
            while n := reader.readinto(buffer):
                chunk = view[:n]
                hasher.update(chunk)
                written = 0
                while written < n:
                    written += os.write(fd, chunk[written:])
                total += n
                writeback.wrote(total)
            os.fsync(fd)
        finally:
            os.close(fd)
    return hasher.hexdigest(), total


def _discard(tmp: Path) -> None:
    # A read-only or vanished destination refuses the unlink too; the original error is the one to report.
    with contextlib.suppress(OSError):
        tmp.unlink()


class FilesystemTransfer:
    """Transfer controller for two filesystem endpoints on this host."""

    async def transfer(
        self,
        source_name: str,
        source: EndpointConfig,
        destination_name: str,
        destination: EndpointConfig,
        paths: list[str],
    ) -> TransferResult:
        if not isinstance(source, FilesystemEndpoint) or not isinstance(destination, FilesystemEndpoint):
            raise UnsupportedEndpoint("FilesystemTransfer copies between filesystem endpoints only")
        files: list[FileCopy] = []
        copied_files = copied_bytes = 0
        loop = asyncio.get_running_loop()
        written_into: set[Path] = set()
        for relpath in paths:
            copy, written, final = await loop.run_in_executor(
                _copy_executor(),
                functools.partial(_copy, source.root, destination.root, relpath, source_name, destination_name),
            )
            files.append(copy)
            if written:
                copied_files += 1
                copied_bytes += copy.size
                written_into.add(final.parent)
        for folder in written_into:  # the renames are durable before anyone hears of the copies
            await loop.run_in_executor(_copy_executor(), fsync_dir, folder)
        return TransferResult(files=files, copied_files=copied_files, copied_bytes=copied_bytes)
