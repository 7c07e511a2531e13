"""The local tar archive: bundles as tar files in a folder (the embedded default for tape).

An htar plan becomes ``<root>/<directory>/<name>``, a POSIX tar (ustar headers, PAX extended headers where
a name or size needs them) whose members are named exactly as the plan's member paths. An hsi plan stores
its single file as is under ``<root>/<directory>/<name>``. Either way an index lies beside it,
``<name>.idx``: JSON lines, a header line then one line per member with its size, mtime, mode, data offset,
the xxh3-128 checksum computed while the bundle was written, and the checksum the mover recorded.

How a bundle is written (decision 0020):

1. every member is stat'ed first: a size other than the plan's means the copy changed since the mover
   verified it (``MemberChanged``); the exact size of the tar is then known and checked against the free
   space (``ArchiveFull`` before a byte is written);
2. headers and data stream into a hidden ``.<name>.beamflow.part`` beside the final name, 1 MiB at a time,
   each chunk hashed as it passes (the mover's loop), with early write-back and one fsync at the end; a
   member whose checksum differs from the mover's fails the write, as does one that changed meanwhile;
3. the tar's listing is read back from the file itself and compared with the plan;
4. the index is written and fsynced, both files are made read-only, the index is renamed into place, and
   the tar is hard-linked to its final name (which fails rather than replace anything) and its temporary
   name removed; the folder, and any folder made for it, is fsynced.

Only step 4 makes a bundle appear, so a crash or a full disk leaves at most hidden temporary files (the
next attempt overwrites them) or an index without its tar (ignored, replaced by the next attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import mmap
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from beamflow.common.archive_backend import (
    ArchiveFull,
    ArchiveWriteFailed,
    BundleExists,
    BundleNotFound,
    BundleUnverified,
    InvalidPlan,
    MemberChanged,
    MemberNotInBundle,
    RestoreConflict,
)
from beamflow.common.archive_model import BundlePlan, BundleState, ExistingBundle, MemberEntry, MemberFile
from beamflow.common.checksums import ALGORITHM, CHUNK_SIZE, file_checksum, new_hasher
from beamflow.common.endpoints import check_relative, resolve_inside
from beamflow.common.errors import PathOutsideRoot, SourceChanged, SourceMissing
from beamflow.common.transfer_fs import fsync_dir, temp_name
from beamflow.common.writeback import EarlyWriteback
from pydantic import BaseModel, ConfigDict, ValidationError

Kind = Literal["htar", "hsi"]

INDEX_SUFFIX = ".idx"
INDEX_FORMAT = "beamflow-archive-index"
INDEX_VERSION = 1

_BLOCK = tarfile.BLOCKSIZE
#: Write-back windows end on a page boundary: a page under write-back that is written again must wait for it.
_PAGE = mmap.PAGESIZE
_RECORD = tarfile.RECORDSIZE
#: errno values meaning "no room for this bundle": retried later (the disk may be freed).
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: errno values of ``link`` on a filesystem without hard links: publish by rename after a check instead.
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
#: How many problems a reason spells out before it counts the rest.
_SHOWN = 5


class _IndexHeader(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["beamflow-archive-index"]
    version: Literal[1]
    kind: Kind
    bundle: str
    algorithm: str
    members: int
    size: int


class _IndexRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    size: int
    mtime: float
    mode: int
    offset: int
    checksum: str
    source_checksum: str | None = None


@dataclass(frozen=True, slots=True)
class _Index:
    header: _IndexHeader
    records: dict[str, _IndexRecord]


@dataclass(frozen=True, slots=True)
class _Entry:
    """A member as the bundle itself lists it."""

    name: str
    size: int
    offset: int
    mode: int
    mtime: float
    regular: bool
    type_name: str = "regular file"


@dataclass(frozen=True, slots=True)
class _Source:
    member: MemberFile
    path: Path
    stat: os.stat_result
    header: bytes


class LocalTarArchive:
    """An archive endpoint on a local (or mounted) folder; implements ``ArchiveBackend``."""

    def __init__(self, root: Path, name: str = "archive") -> None:
        self.root = root
        self.name = name

    # -- the interface ---------------------------------------------------------------------------------

    async def state(self, plan: BundlePlan, *, deep: bool = False) -> BundleState:
        """See ``ArchiveBackend.state``. ``deep`` also re-reads every member's bytes from the bundle and
        compares them with the index's checksums (what the pruner wants before deleting a copy)."""
        return await asyncio.to_thread(self._state, plan, deep)

    async def write(self, plan: BundlePlan, source_root: Path) -> BundleState:
        return await asyncio.to_thread(self._write, plan, source_root)

    async def bundles(self, beamline: str, proposal: str) -> list[ExistingBundle]:
        return await asyncio.to_thread(self._bundles, beamline, proposal)

    async def members(self, bundle_path: str) -> list[MemberEntry]:
        return await asyncio.to_thread(self._members, bundle_path)

    async def restore(self, bundle_path: str, members: list[str] | None, destination: Path) -> list[Path]:
        return await asyncio.to_thread(self._restore, bundle_path, members, destination)

    # -- where things are ------------------------------------------------------------------------------

    def _locate(self, plan: BundlePlan) -> Path:
        """The final path of a plan's bundle, refusing names that could clash with temporaries or escape."""
        if "/" in plan.name or plan.name.startswith(".") or plan.name.endswith(INDEX_SUFFIX):
            raise InvalidPlan(
                f"bundle name {plan.name!r} of {plan.path} is refused: it must be one path component, not "
                f"hidden, and not end with {INDEX_SUFFIX}; fix the planner"
            )
        if "/".join(check_relative(plan.directory)) != plan.directory:
            raise InvalidPlan(f"bundle folder {plan.directory!r} is not a plain relative path; fix the planner")
        return resolve_inside(self.root, plan.path, self.name)

    def _existing(self, bundle_path: str) -> Path:
        path = resolve_inside(self.root, bundle_path, self.name)
        if not path.is_file() or path.name.startswith("."):
            raise BundleNotFound(f"no bundle {bundle_path} in the archive {self.name} ({self.root})")
        return path

    def check_members(self, bundle_path: str, files: list[tuple[str, int, str]]) -> list[str]:
        """Whether the bundle still holds ``files`` (name, size, checksum): listed by the tar itself, in the
        index with that size and checksum, and their bytes re-read and re-hashed now. Blocking; the pruner's
        fresh check of an archived copy. Returns the problems, none when every file checks out."""
        try:
            path = self._existing(bundle_path)
        except (BundleNotFound, PathOutsideRoot) as exc:
            return [str(exc)]
        index, index_problem = _read_index(path)
        if index is None:
            return [f"bundle {bundle_path} has no readable index ({index_problem}); it cannot vouch for its members"]
        entries, problems = _listing(path, index.header.kind, index)
        listed = {e.name: e for e in entries}
        wanted: list[_Entry] = []
        for name, size, checksum in files:
            entry, record = listed.get(name), index.records.get(name)
            if entry is None or record is None:
                problems.append(f"member {name} is not in bundle {bundle_path}")
            elif entry.size != size or record.checksum != checksum:
                problems.append(
                    f"member {name} in bundle {bundle_path} is not the verified copy ({entry.size} bytes, "
                    f"{record.checksum}; expected {size} bytes, {checksum})"
                )
            else:
                wanted.append(entry)
        return problems or _check_data(path, wanted, index)

    # -- state -----------------------------------------------------------------------------------------

    def _state(self, plan: BundlePlan, deep: bool) -> BundleState:
        path = self._locate(plan)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return BundleState(state="absent")
        if not stat.S_ISREG(mode):
            return BundleState(state="unverified", reason=f"{plan.path} is not a regular file")
        index, index_problem = _read_index(path)
        entries, problems = _listing(path, plan.kind, index)
        if index_problem:
            problems.append(index_problem)
        problems += _compare(plan, entries, index)
        if deep and not problems and index is not None:
            problems += _check_data(path, entries, index)
        members = [MemberEntry(name=e.name, size=e.size) for e in entries]
        if problems:
            return BundleState(state="unverified", members=members, reason=_reason(problems))
        return BundleState(state="verified", members=members)

    # -- write -----------------------------------------------------------------------------------------

    def _write(self, plan: BundlePlan, source_root: Path) -> BundleState:
        final = self._locate(plan)
        _check_members(plan)
        if os.path.lexists(final):
            raise _exists(plan.path, final)
        sources = [_source(source_root, member, plan.kind) for member in plan.members]
        needed = _tar_size(sources) if plan.kind == "htar" else sources[0].stat.st_size
        try:
            created = _make_folder(final.parent)
        except OSError as exc:
            raise _write_error(exc, plan, final) from exc
        final = self._locate(plan)  # again, now that the folder exists: a symlinked folder must not lead out
        tmp = temp_name(final)
        index_path = _index_path(final)
        index_tmp = temp_name(index_path)
        try:
            # A leftover of a crashed attempt is read-only once it got that far: remove, don't truncate.
            _discard(tmp)
            _discard(index_tmp)
            _check_space(final.parent, needed, plan)
            if plan.kind == "htar":
                records, size = _write_tar(tmp, sources)
            else:
                records, size = _write_single(tmp, sources[0])
            header = _IndexHeader(
                format=INDEX_FORMAT,
                version=INDEX_VERSION,
                kind=plan.kind,
                bundle=plan.name,
                algorithm=ALGORITHM,
                members=len(records),
                size=size,
            )
            index = _Index(header, {r.name: r for r in records})
            entries, problems = _listing(tmp, plan.kind, index)
            problems += _compare(plan, entries, index)
            problems += [
                f"member {e.name} lies at byte {e.offset} of the tar, it was written at {index.records[e.name].offset}"
                for e in entries
                if e.name in index.records and e.offset != index.records[e.name].offset
            ]
            if problems:
                raise ArchiveWriteFailed(
                    f"bundle {plan.path} did not read back as written: {_reason(problems)}; it was discarded and "
                    "nothing was published. The write will be retried; if this repeats, check the archive's disk"
                )
            _write_index(index_tmp, header, records)
            tmp.chmod(0o444)
            if os.path.lexists(final):
                raise _exists(plan.path, final)
            os.replace(index_tmp, index_path)
            if not _link_or_rename(tmp, final):
                raise _exists(plan.path, final)
        except OSError as exc:
            _discard(tmp)
            _discard(index_tmp)
            raise _write_error(exc, plan, final) from exc
        except BaseException:
            _discard(tmp)
            _discard(index_tmp)
            raise
        try:  # the renames, and any folder made for them, are durable before the bundle is called verified
            for folder in {final.parent, *created}:
                fsync_dir(folder)
        except OSError as exc:
            raise ArchiveWriteFailed(
                f"bundle {plan.path} was written and renamed into place, but its folder could not be synced: "
                f"{exc.strerror} (errno {exc.errno}); check the archive's disk, then the bundle's state"
            ) from exc
        return BundleState(state="verified", members=[MemberEntry(name=e.name, size=e.size) for e in entries])

    # -- listings --------------------------------------------------------------------------------------

    def _bundles(self, beamline: str, proposal: str) -> list[ExistingBundle]:
        for value, what in ((beamline, "beamline"), (proposal, "proposal")):
            if len(check_relative(value)) != 1 or "/" in value:
                raise PathOutsideRoot(f"{what} {value!r} must be a single path component")
        directory = f"{beamline}/raw/{proposal}"
        folder = resolve_inside(self.root, directory, self.name)
        try:
            names = sorted(child.name for child in folder.iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        present = set(names)
        found: list[ExistingBundle] = []
        for name in names:
            if name.startswith(".") or (name.endswith(INDEX_SUFFIX) and name + INDEX_SUFFIX not in present):
                continue
            path = folder / name
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
            except FileNotFoundError:
                continue
            index, _ = _read_index(path)
            kind: Kind = index.header.kind if index else ("htar" if name.endswith(".tar") else "hsi")
            entries, _ = _listing(path, kind, index)
            found.append(ExistingBundle(directory=directory, name=name, kind=kind, members=[e.name for e in entries]))
        return found

    def _members(self, bundle_path: str) -> list[MemberEntry]:
        path = self._existing(bundle_path)
        index, _ = _read_index(path)
        entries, problems = _listing(path, _kind_of(path, index), index)
        if problems:
            raise _unverified(bundle_path, _reason(problems))
        return [MemberEntry(name=e.name, size=e.size) for e in entries]

    # -- restore ---------------------------------------------------------------------------------------

    def _restore(self, bundle_path: str, members: list[str] | None, destination: Path) -> list[Path]:
        path = self._existing(bundle_path)
        index, _ = _read_index(path)
        entries, _ = _listing(path, _kind_of(path, index), index)
        if members is None:
            wanted = [e for e in entries if e.type_name != "directory"]
        else:
            for name in members:
                check_relative(name)
            by_name = {e.name: e for e in entries}
            unknown = [name for name in members if name not in by_name]
            if unknown:
                raise MemberNotInBundle(
                    f"bundle {bundle_path} does not hold {_few(unknown)}; list it with members() and ask for "
                    "names it holds (nothing was restored)"
                )
            wanted = [by_name[name] for name in dict.fromkeys(members)]
        for entry in wanted:
            if not entry.regular:
                raise _unverified(
                    bundle_path,
                    f"member {entry.name} is a {entry.type_name}, not a regular file; beamflow restores regular "
                    "files only (nothing was restored)",
                )
        destination.mkdir(parents=True, exist_ok=True)
        targets = [resolve_inside(destination, e.name, "the restore destination") for e in wanted]
        size = path.stat().st_size
        cut = [e.name for e in wanted if e.offset + e.size > size]
        if cut:
            raise _unverified(bundle_path, f"the file ends inside {_few(cut)} (truncated)")
        restored: list[Path] = []
        folders: set[Path] = set()
        with path.open("rb", buffering=0) as bundle:
            expected = [_expected_checksum(bundle, e, index) for e in wanted]
            conflicts = [
                str(target)
                for target, entry, digest in zip(targets, wanted, expected, strict=True)
                if _differs(target, entry.size, digest)
            ]
            if conflicts:
                raise RestoreConflict(
                    f"restoring {bundle_path} would overwrite different files at {_few(conflicts)}; nothing was "
                    "restored. Move them aside or restore into another folder"
                )
            for target, entry, digest in zip(targets, wanted, expected, strict=True):
                if not os.path.lexists(target):
                    _restore_one(bundle, bundle_path, entry, digest, target, index)
                    folders.add(target.parent)
                restored.append(target)
        for folder in folders:
            fsync_dir(folder)
        return restored


# -- writing ---------------------------------------------------------------------------------------------


def _check_members(plan: BundlePlan) -> None:
    if plan.kind == "hsi" and len(plan.members) != 1:
        raise InvalidPlan(
            f"hsi bundle {plan.path} has {len(plan.members)} members; hsi stores one file; fix the planner"
        )
    seen: set[str] = set()
    for member in plan.members:
        if "/".join(check_relative(member.path)) != member.path:
            raise InvalidPlan(f"member path {member.path!r} of {plan.path} is not canonical; fix the planner")
        if member.path in seen:
            raise InvalidPlan(f"member {member.path} appears twice in {plan.path}; fix the planner")
        seen.add(member.path)


def _source(source_root: Path, member: MemberFile, kind: Kind) -> _Source:
    path = resolve_inside(source_root, member.path, "the archive source")
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise SourceMissing(
            f"{member.path} (scan {member.scan_id}) is not on the archive source ({path}); it was moved or deleted "
            "after the plan was made; nothing was archived"
        ) from exc
    if not stat.S_ISREG(st.st_mode):
        raise SourceMissing(f"{member.path} on the archive source is not a regular file; nothing was archived")
    if st.st_size != member.size:
        raise MemberChanged(
            f"{member.path} (scan {member.scan_id}) has {st.st_size} bytes on the archive source, the verified copy "
            f"had {member.size}: it changed since it was copied. Nothing was archived; re-copy the scan, then "
            "plan the archive again"
        )
    header = b""
    if kind == "htar":
        info = tarfile.TarInfo(member.path)
        info.size = st.st_size
        info.mtime = int(st.st_mtime)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid = st.st_uid
        info.gid = st.st_gid
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return _Source(member, path, st, header)


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and any missing parent; returns the folders that gained an entry (to be synced)."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return [created.parent for created in missing]


def _padding(size: int) -> int:
    return -size % _BLOCK


def _tar_size(sources: list[_Source]) -> int:
    body = sum(len(s.header) + s.stat.st_size + _padding(s.stat.st_size) for s in sources) + 2 * _BLOCK
    return body + (-body % _RECORD)


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _write_all(fd: int, data: bytes | memoryview) -> None:
    written = 0
    size = len(data)
    while written < size:
        written += os.write(fd, data[written:])


def _stream(fd: int, source: _Source, view: memoryview, writeback: EarlyWriteback, total: int) -> tuple[str, int]:
    """Append ``source``'s bytes to ``fd``, hashing them; returns the digest and the new running total."""
    member = source.member
    hasher = new_hasher()
    try:
        reader = source.path.open("rb", buffering=0)
    except FileNotFoundError as exc:
        raise SourceMissing(f"{member.path} disappeared from the archive source while the bundle was written") from exc
    with reader:
        if _identity(os.fstat(reader.fileno())) != _identity(source.stat):
            raise _changed(member)
        left = source.stat.st_size
        chunk_size = len(view)
        while left:
            n = reader.readinto(view[: min(chunk_size, left)])
            if not n:
                raise _changed(member)
            chunk = view[:n]
            hasher.update(chunk)
            _write_all(fd, chunk)
            left -= n
            total += n
            writeback.wrote(total - total % _PAGE)
        if _identity(os.fstat(reader.fileno())) != _identity(source.stat):
            raise _changed(member)
    digest = hasher.hexdigest()
    if member.checksum is not None and member.checksum != digest:
        raise MemberChanged(
            f"{member.path} (scan {member.scan_id}) on the archive source does not match the checksum the mover "
            f"verified ({ALGORITHM} {digest} != {member.checksum}): it changed since it was copied. Nothing was "
            "archived; re-copy the scan, then plan the archive again"
        )
    return digest, total


def _changed(member: MemberFile) -> SourceChanged:
    return SourceChanged(
        f"{member.path} changed on the archive source while it was being archived; the bundle was discarded "
        "and will be written again"
    )


def _record(source: _Source, digest: str, offset: int) -> _IndexRecord:
    return _IndexRecord(
        name=source.member.path,
        size=source.stat.st_size,
        mtime=source.stat.st_mtime,
        mode=stat.S_IMODE(source.stat.st_mode),
        offset=offset,
        checksum=digest,
        source_checksum=source.member.checksum,
    )


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _write_tar(tmp: Path, sources: list[_Source]) -> tuple[list[_IndexRecord], int]:
    """Write the tar to ``tmp`` and fsync it; returns the index records and the tar's size."""
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    records: list[_IndexRecord] = []
    total = 0
    fd = _create(tmp)
    try:
        writeback = EarlyWriteback(fd)
        for source in sources:
            _write_all(fd, source.header)
            total += len(source.header)
            offset = total
            digest, total = _stream(fd, source, view, writeback, total)
            pad = _padding(source.stat.st_size)
            if pad:
                _write_all(fd, bytes(pad))
                total += pad
            records.append(_record(source, digest, offset))
        trailer = 2 * _BLOCK + (-(total + 2 * _BLOCK) % _RECORD)
        _write_all(fd, bytes(trailer))
        total += trailer
        os.fsync(fd)
    finally:
        os.close(fd)
    return records, total


def _write_single(tmp: Path, source: _Source) -> tuple[list[_IndexRecord], int]:
    buffer = bytearray(CHUNK_SIZE)
    fd = _create(tmp)
    try:
        digest, total = _stream(fd, source, memoryview(buffer), EarlyWriteback(fd), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return [_record(source, digest, 0)], total


def _write_index(tmp: Path, header: _IndexHeader, records: list[_IndexRecord]) -> None:
    lines = [header.model_dump_json(), *(r.model_dump_json() for r in records)]
    data = ("\n".join(lines) + "\n").encode()
    fd = _create(tmp)
    try:
        _write_all(fd, data)
        os.fchmod(fd, 0o444)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_space(folder: Path, needed: int, plan: BundlePlan) -> None:
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise ArchiveFull(
            f"the archive folder {folder} has {free} bytes free, bundle {plan.path} needs {needed}; nothing was "
            "written. Free space there (or give the archive more room); the write will be retried"
        )


def _link_or_rename(tmp: Path, final: Path) -> bool:
    """Give ``tmp`` its final name unless something is already there (then False, nothing changed).

    A hard link fails rather than replace; on a filesystem without hard links the name is checked and then
    renamed (a narrow race, acceptable as each bundle has one writer).
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        if os.path.lexists(final):
            return False
        os.rename(tmp, final)
        return True
    tmp.unlink()
    return True


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _write_error(exc: OSError, plan: BundlePlan, final: Path) -> ArchiveWriteFailed:
    what = f"{exc.strerror or exc} (errno {exc.errno})"
    if exc.errno in _FULL:
        return ArchiveFull(
            f"the archive refused bundle {plan.path} at {final}: {what}; it needs {plan.size} bytes of members. "
            "Nothing was published and the temporary files were removed; free space there, the write will be "
            "retried"
        )
    return ArchiveWriteFailed(
        f"writing bundle {plan.path} to {final} failed: {what}; nothing was published and the temporary files "
        "were removed. Fix the archive folder (permissions, a read-only or failing disk); the write will be retried"
    )


# -- reading ---------------------------------------------------------------------------------------------


def _index_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + INDEX_SUFFIX)


def _read_index(bundle: Path) -> tuple[_Index | None, str | None]:
    """The index beside ``bundle``, or None and why not."""
    path = _index_path(bundle)
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return None, f"its index {path.name} is missing"
    except OSError as exc:
        return None, f"its index {path.name} cannot be read: {exc.strerror}"
    try:
        header = _IndexHeader.model_validate_json(lines[0])
        records = [_IndexRecord.model_validate_json(line) for line in lines[1:] if line.strip()]
    except (IndexError, ValidationError) as exc:
        return None, f"its index {path.name} is not a beamflow archive index ({str(exc).splitlines()[0]})"
    if len(records) != header.members:
        return None, f"its index {path.name} lists {len(records)} members, its header says {header.members}"
    return _Index(header, {r.name: r for r in records}), None


def _kind_of(path: Path, index: _Index | None) -> Kind:
    if index is not None:
        return index.header.kind
    return "htar" if path.name.endswith(".tar") else "hsi"


def _type_name(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "directory"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    return "regular file" if info.isreg() else "special file"


def _listing(path: Path, kind: Kind, index: _Index | None) -> tuple[list[_Entry], list[str]]:
    """The members ``path`` holds, read from the bundle itself, and any problem met reading them."""
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return [], [f"the bundle cannot be read: {exc.strerror}"]
    if kind == "hsi":
        record = next(iter(index.records.values()), None) if index else None
        name = record.name if record else path.name
        mode = record.mode if record else 0o644
        mtime = record.mtime if record else os.stat(path).st_mtime
        return [_Entry(name, size, 0, mode, mtime, True)], []
    entries: list[_Entry] = []
    problems: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            while True:
                try:
                    info = tar.next()
                except tarfile.ReadError as exc:
                    if entries and _end_of(entries[-1]) > size:
                        problems.append(
                            f"the file ends at byte {size}, inside member {entries[-1].name} or its padding: the "
                            "end-of-archive marker is missing (truncated)"
                        )
                    else:
                        problems.append(f"the tar cannot be read past {_after(entries)}: {exc}")
                    break
                if info is None:
                    problems += _check_end(path, tar.offset, size, entries)
                    break
                entries.append(
                    _Entry(
                        info.name, info.size, info.offset_data, info.mode, info.mtime, info.isreg(), _type_name(info)
                    )
                )
    except tarfile.ReadError as exc:
        problems.append(f"it is not a readable tar file: {exc}")
    except OSError as exc:
        problems.append(f"the bundle cannot be read: {exc.strerror}")
    cut = [e for e in entries if e.offset + e.size > size]
    if cut:  # says more than tarfile's "unexpected end of data" about the same truncation
        problems = [p for p in problems if "its padding" not in p]
        problems.insert(0, f"the file ends at byte {size}, inside the data of member {cut[0].name} (truncated)")
    if index is not None and index.header.size != size and not cut:
        problems.append(f"the file has {size} bytes, its index says {index.header.size}")
    return entries, problems


def _end_of(entry: _Entry) -> int:
    return entry.offset + entry.size + _padding(entry.size)


def _after(entries: list[_Entry]) -> str:
    return f"member {entries[-1].name}" if entries else "its start"


def _check_end(path: Path, offset: int, size: int, entries: list[_Entry]) -> list[str]:
    """The listing stopped at ``offset``: it must be the end-of-archive marker (two zero blocks)."""
    with path.open("rb") as handle:
        handle.seek(offset)
        marker = handle.read(2 * _BLOCK)
    if len(marker) < 2 * _BLOCK:
        if entries and entries[-1].offset + entries[-1].size > size:
            return []  # reported as a truncated member
        return [f"the end-of-archive marker is missing after {_after(entries)} (the file is truncated at byte {size})"]
    if marker.count(0) != len(marker):
        return [
            f"the tar header at byte {offset}, after {_after(entries)}, is unreadable (corrupt); "
            "the listing stops there"
        ]
    return []


def _compare(plan: BundlePlan, entries: list[_Entry], index: _Index | None) -> list[str]:
    """What differs between the plan, the bundle's listing and its index."""
    problems: list[str] = []
    planned = {m.path: m for m in plan.members}
    listed: dict[str, _Entry] = {}
    twice: list[str] = []
    for entry in entries:
        if entry.name in listed:
            twice.append(entry.name)
        listed[entry.name] = entry
    if twice:
        problems.append(f"the tar lists {_few(twice)} more than once")
    missing = [name for name in planned if name not in listed]
    if missing:
        problems.append(f"the bundle does not hold planned member(s) {_few(missing)}")
    extra = [name for name in listed if name not in planned]
    if extra:
        problems.append(f"the bundle holds unplanned member(s) {_few(extra)}")
    for name, member in planned.items():
        found = listed.get(name)
        if found is None:
            continue
        if not found.regular:
            problems.append(f"member {name} is a {found.type_name}, not a regular file")
        elif found.size != member.size:
            problems.append(f"member {name} has {found.size} bytes in the bundle, the plan has {member.size}")
    if index is None:
        return problems
    if index.header.kind != plan.kind:
        problems.append(f"its index says it is an {index.header.kind} bundle, the plan an {plan.kind} one")
    if index.header.algorithm != ALGORITHM:
        problems.append(f"its index uses {index.header.algorithm} checksums, this build compares {ALGORITHM}")
    for name, member in planned.items():
        record = index.records.get(name)
        found = listed.get(name)
        if record is None:
            problems.append(f"member {name} is not in the index")
        elif found is not None and record.size != found.size:
            problems.append(f"member {name} has {found.size} bytes in the bundle, its index says {record.size}")
        elif member.checksum is not None and record.checksum != member.checksum:
            problems.append(
                f"member {name} was archived with {ALGORITHM} {record.checksum}, the plan's copy has {member.checksum}"
            )
    unplanned = [name for name in index.records if name not in planned]
    if unplanned:
        problems.append(f"its index lists unplanned member(s) {_few(unplanned)}")
    return problems


def _hash_range(bundle: io.FileIO, offset: int, size: int) -> tuple[str, int]:
    """The checksum of ``size`` bytes of ``bundle`` from ``offset``, and how many bytes there were."""
    hasher = new_hasher()
    view = memoryview(bytearray(max(1, min(CHUNK_SIZE, size))))
    bundle.seek(offset)
    left = size
    while left:
        n = bundle.readinto(view[: min(len(view), left)])
        if not n:
            break
        hasher.update(view[:n])
        left -= n
    return hasher.hexdigest(), size - left


def _check_data(path: Path, entries: list[_Entry], index: _Index) -> list[str]:
    """Re-read every member's bytes from the bundle and compare them with the index's checksums."""
    problems: list[str] = []
    with path.open("rb", buffering=0) as bundle:
        for entry in entries:
            record = index.records.get(entry.name)
            if record is None or not entry.regular:
                continue
            digest, read = _hash_range(bundle, entry.offset, entry.size)
            if read != entry.size or digest != record.checksum:
                problems.append(
                    f"member {entry.name}'s bytes in the bundle do not match its index ({ALGORITHM} {digest} != "
                    f"{record.checksum}): the bundle is corrupt"
                )
    return problems


def _expected_checksum(bundle: io.FileIO, entry: _Entry, index: _Index | None) -> str:
    record = index.records.get(entry.name) if index else None
    if record is not None:
        return record.checksum
    return _hash_range(bundle, entry.offset, entry.size)[0]


def _differs(target: Path, size: int, digest: str) -> bool:
    """Whether a file already at ``target`` is something other than the member to restore there."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        return True
    return file_checksum(target)[0] != digest


def _restore_one(
    bundle: io.FileIO, bundle_path: str, entry: _Entry, digest: str, target: Path, index: _Index | None
) -> None:
    """Copy one member out of the bundle: temporary name, checksum in the same pass, fsync, link into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    _discard(tmp)
    hasher = new_hasher()
    view = memoryview(bytearray(max(1, min(CHUNK_SIZE, entry.size))))
    try:
        fd = _create(tmp)
        try:
            writeback = EarlyWriteback(fd)
            bundle.seek(entry.offset)
            total = 0
            while total < entry.size:
                n = bundle.readinto(view[: min(len(view), entry.size - total)])
                if not n:
                    raise _unverified(bundle_path, f"the file ends inside member {entry.name} (truncated)")
                hasher.update(view[:n])
                _write_all(fd, view[:n])
                total += n
                writeback.wrote(total)
            os.fsync(fd)
        finally:
            os.close(fd)
        if hasher.hexdigest() != digest:
            raise _unverified(
                bundle_path,
                f"member {entry.name}'s bytes do not match its index ({ALGORITHM} {hasher.hexdigest()} != {digest}): "
                "the bundle is corrupt; nothing was restored for it",
            )
        record = index.records.get(entry.name) if index else None
        mtime = record.mtime if record else entry.mtime
        os.utime(tmp, (mtime, mtime))
        tmp.chmod(stat.S_IMODE(record.mode if record else entry.mode))
        if not _link_or_rename(tmp, target):
            raise RestoreConflict(f"{target} appeared while {entry.name} was being restored; it was not overwritten")
    except BaseException:
        _discard(tmp)
        raise


def _exists(bundle: str, where: Path) -> BundleExists:
    return BundleExists(
        f"bundle {bundle} already exists in the archive ({where}); bundles are immutable and are never "
        "overwritten. Check it with the backend's state(): if it is verified there is nothing to do; otherwise "
        "inspect it and move it aside by hand, or plan the scans into a new part"
    )


def _unverified(bundle: str, reason: str) -> BundleUnverified:
    return BundleUnverified(
        f"bundle {bundle} does not verify: {reason}. It was not changed; inspect it (tar -tvf) and move it aside "
        "by hand before it is written again, and do not prune the copies it was meant to protect"
    )


def _few(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown} and {len(names) - _SHOWN} more"


def _reason(problems: list[str]) -> str:
    shown = "; ".join(problems[:_SHOWN])
    more = len(problems) - _SHOWN
    return shown if more <= 0 else f"{shown}; and {more} more problem(s)"
