"""A stand-in for NERSC's ``htar`` that writes tar archives into the fake HPSS folder (see ``hpss``).

Run as ``python -m beamflow.sfapi_local.htar ...`` (or through the ``htar`` wrapper script a job finds first on
its ``PATH``). It follows the real tool where a caller can tell the difference:

* ``htar -c[v]f ARCHIVE [-L listfile] files...`` writes ARCHIVE (an HPSS path; relative to the HPSS home) as a
  POSIX tar of the members, named exactly as given and read from the current directory, directories recursively,
  plus htar's consistency file ``<tmpdir>/HTAR_CF_CHK_<pid>_<time>`` as the last member (the real htar adds it
  too, and lists it), and writes the index ``ARCHIVE.idx`` beside it. An existing archive is overwritten without
  warning, as the real ``-c`` does (there is no append). ``-P`` creates missing HPSS folders on the way.
* Names that do not fit a ustar header as htar splits them (at most 99 bytes after the last-used slash, at most
  154 bytes of prefix before it; link targets at most 99 bytes) are skipped with the real warning; the rest is
  archived, ``HTAR: HTAR SUCCESSFUL`` is still printed, and the exit status is 70 -- so a caller must check it.
* More members than ``-M N`` / ``$BEAMFLOW_FAKE_HTAR_MAX_MEMBERS`` (default 1,000,000), or a member file larger
  than ``$BEAMFLOW_FAKE_HTAR_MAX_MEMBER_BYTES`` (default 68,719,476,735 = 8**12-1 bytes, "about 68 GB"), or a
  missing input file: nothing is written, ``HTAR: HTAR FAILED``, exit 1.
* ``-t[v]f ARCHIVE [members]`` lists from the index (as the real one does: no index, no listing) in the real
  format: ``HTAR: -rw-r--r--  user/group       1234 2024-05-01 12:00  name``.
* ``-x[v]f ARCHIVE [members]`` extracts all, or the named members (a directory name extracts its subtree), into
  the current directory; the consistency file is not extracted.
* ``-Hcrc`` stores a CRC-32 of each member in the index (on create) and checks it (on extract);
  ``-Hverify=info|crc|compare|all|0|1|2`` re-reads the new archive and checks headers, CRCs, and/or contents
  against the local files. ``-K`` verifies an existing archive against its index; ``-X`` rebuilds the index.

Differences from the real tool: the index is JSON (the real one is a binary format nobody reads directly); member
lines (``HTAR: a ...``, ``HTAR: x ...``, listings) go to stdout and every status line (``HTAR Create complete``,
``HTAR: HTAR SUCCESSFUL``/``FAILED``, warnings, errors) to stderr -- merge the two to see a real htar log; usage
errors exit 64; ``..`` components are refused on extraction; archives are written to a temporary name and
renamed, so a failed run leaves the previous archive in place.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import stat
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from beamflow.sfapi_local.hpss import EX_USAGE, FakeHpss, HpssUnavailable
from beamflow.sfapi_local.owners import group_name, user_name

MAX_NAME_BYTES = 99
MAX_PREFIX_BYTES = 154
MAX_LINK_BYTES = 99
DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_MEMBER_BYTES = 8**12 - 1
MAX_MEMBERS_ENV = "BEAMFLOW_FAKE_HTAR_MAX_MEMBERS"
MAX_MEMBER_BYTES_ENV = "BEAMFLOW_FAKE_HTAR_MAX_MEMBER_BYTES"
INDEX_FORMAT = "beamflow-fake-htar-index/1"
CONSISTENCY_PREFIX = "HTAR_CF_CHK_"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MEMBERS_SKIPPED = 70

SUCCESS_LINE = "HTAR: HTAR SUCCESSFUL"
FAILURE_LINE = "HTAR: HTAR FAILED"
NAME_TOO_LONG = "Warning: name too long for tar archive- file omitted"

_ACTIONS = "ctxKX"
_FLAGS_WITH_VALUE = "fLMHIdSTYn"
_FLAGS = "vPhpmqoOwBVE"
_VERIFY_LEVELS = {"0": {"info"}, "1": {"info", "crc"}, "2": {"info", "crc", "compare"}}
_VERIFY_OPTIONS = {"info", "crc", "compare"}


class UsageError(Exception):
    """The command line is not one htar accepts."""


class HtarError(Exception):
    """The operation failed; nothing (more) is written."""


# --- the ustar name limits (pure) ------------------------------------------------------------------------------


def _encoded(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def split_ustar_name(name: str) -> tuple[str, str] | None:
    """``(prefix, name)`` as htar stores ``name`` in a ustar header, or None when it cannot be stored.

    A name of at most 99 bytes needs no prefix. A longer one must be cut at a slash into a prefix of at most 154
    bytes and a non-empty rest of at most 99 bytes (htar keeps one byte of each field for a terminating zero).
    """
    data = _encoded(name)
    if len(data) <= MAX_NAME_BYTES:
        return "", name
    # The leftmost usable slash gives the longest rest and the shortest prefix: if its prefix is too long, all are.
    for index, byte in enumerate(data):
        if byte != ord("/"):
            continue
        rest = data[index + 1 :]
        if not rest or len(rest) > MAX_NAME_BYTES:
            continue
        prefix = data[:index]
        if len(prefix) > MAX_PREFIX_BYTES:
            return None
        return prefix.decode("utf-8", "surrogateescape"), rest.decode("utf-8", "surrogateescape")
    return None


def fits_ustar(name: str) -> bool:
    """True when htar can store ``name`` (a member name; directories end with ``/``)."""
    return split_ustar_name(name) is not None


def link_fits_ustar(target: str) -> bool:
    """True when htar can store a symbolic or hard link pointing at ``target``."""
    return len(_encoded(target)) <= MAX_LINK_BYTES


def limit_from(environ: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer limit from the environment, or ``default``."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw.replace(",", "").replace("_", ""))
    if value <= 0:
        raise ValueError(f"${name} must be a positive integer, not {raw!r}")
    return value


# --- the command line ------------------------------------------------------------------------------------------


@dataclass
class Options:
    """One htar invocation."""

    action: str
    archive: str
    files: list[str] = field(default_factory=list)
    verbose: bool = False
    list_file: str | None = None
    max_members: int | None = None
    crc: bool = False
    verify: set[str] = field(default_factory=set)
    create_dirs: bool = False
    follow_links: bool = False
    preserve_modes: bool = False
    keep_mtime: bool = True
    local_archive: bool = False
    index: str | None = None


def _apply_h_options(options: Options, value: str) -> None:
    for item in filter(None, value.split(":")):
        key, _, arg = item.partition("=")
        if key == "crc":
            options.crc = True
        elif key == "nocrc":
            options.crc = False
        elif key == "verify":
            for choice in filter(None, arg.split(",")):
                if choice == "all":
                    options.verify |= _VERIFY_OPTIONS
                elif choice in _VERIFY_LEVELS:
                    options.verify |= _VERIFY_LEVELS[choice]
                elif choice in _VERIFY_OPTIONS:
                    options.verify.add(choice)
                elif choice.startswith("no") and choice[2:] in _VERIFY_OPTIONS:
                    options.verify.discard(choice[2:])
                elif choice == "paranoid":
                    continue
                else:
                    raise UsageError(f"unknown -Hverify option {choice!r}")
        elif key in ("nostage", "stage", "cos", "family", "umask", "nooptimize", "optimize", "exfile"):
            continue  # storage tuning: nothing to do on a local folder
        else:
            raise UsageError(f"unknown -H option {item!r}")


def parse_args(argv: Sequence[str]) -> Options:
    """Parse an htar command line (options before the first member name; ``-cvf X`` style grouping allowed)."""
    action: str | None = None
    values: dict[str, str] = {}
    flags: set[str] = set()
    h_values: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            index += 1
            break
        # The first word may omit its dash when it is made of htar letters ("htar cvf x.tar ...").
        bare = index == 0 and not token.startswith("-") and bool(token) and token[0] in _ACTIONS
        if not (token.startswith("-") and len(token) > 1) and not bare:
            break
        letters = token if bare else token[1:]
        index += 1
        position = 0
        while position < len(letters):
            letter = letters[position]
            position += 1
            if letter in _ACTIONS:
                if action is not None and action != letter:
                    raise UsageError(f"only one of -c -t -x -K -X may be given (got -{action} and -{letter})")
                action = letter
            elif letter in _FLAGS_WITH_VALUE:
                value = letters[position:]
                if not value:
                    if index >= len(args):
                        raise UsageError(f"-{letter} needs a value")
                    value = args[index]
                    index += 1
                if letter == "H":
                    h_values.append(value)
                else:
                    values[letter] = value
                break
            elif letter in _FLAGS:
                flags.add(letter)
            else:
                raise UsageError(f"unknown option -{letter}")
    if action is None:
        raise UsageError("one of -c -t -x -K -X is required")
    if "f" not in values:
        raise UsageError("-f Archive is required")
    if "n" in values:
        raise UsageError("-n (incremental archives) is not supported by the stand-in")
    options = Options(action=action, archive=values["f"], files=args[index:])
    options.verbose = "v" in flags
    options.create_dirs = "P" in flags
    options.follow_links = "h" in flags
    options.preserve_modes = "p" in flags
    options.keep_mtime = "m" not in flags
    options.local_archive = "E" in flags
    options.list_file = values.get("L")
    options.index = values.get("I")
    if "M" in values:
        try:
            options.max_members = int(values["M"])
        except ValueError:
            raise UsageError(f"-M needs a number, not {values['M']!r}") from None
        if options.max_members <= 0:
            raise UsageError("-M needs a positive number")
    for value in h_values:
        _apply_h_options(options, value)
    if action == "c" and not options.files and not options.list_file:
        raise UsageError("-c needs member files (or -L listfile)")
    return options


# --- the archive and its index ---------------------------------------------------------------------------------


@dataclass
class Member:
    """One entry of the index: where a member is in the archive, and what it was."""

    name: str
    kind: str  # "file", "dir", "symlink"
    size: int
    mode: int
    mtime: int
    uid: int
    gid: int
    uname: str
    gname: str
    linkname: str = ""
    offset: int = 0
    data_offset: int = 0
    crc32: int | None = None
    consistency: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Member:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


@dataclass
class Index:
    archive: str
    members: list[Member]
    crc: bool
    created: float

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "archive": self.archive,
            "created": self.created,
            "crc": self.crc,
            "members": [member.to_json() for member in self.members],
        }

    @classmethod
    def load(cls, path: Path) -> Index:
        data = json.loads(path.read_text())
        if data.get("format") != INDEX_FORMAT:
            raise HtarError(f"{path} is not an htar index this stand-in wrote")
        members = [Member.from_json(item) for item in data["members"]]
        return cls(data["archive"], members, bool(data.get("crc")), float(data.get("created", 0)))

    def write(self, path: Path) -> None:
        _atomic_write(path, json.dumps(self.to_json(), indent=1).encode())


class _CrcReader:
    """Reads a file for tarfile while computing its CRC-32."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.crc = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.crc = zlib.crc32(data, self.crc)
        return data


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.htar-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _padded(size: int) -> int:
    return (size + tarfile.BLOCKSIZE - 1) // tarfile.BLOCKSIZE * tarfile.BLOCKSIZE


@dataclass
class _Planned:
    name: str
    path: Path
    info: os.stat_result
    linkname: str = ""


def _walk(spec: str, cwd: Path, follow: bool) -> Iterator[tuple[str, Path]]:
    path = Path(spec) if spec.startswith("/") else cwd / spec
    yield spec, path
    if path.is_dir() and (follow or not path.is_symlink()):
        base = spec.rstrip("/") or "/"
        for child in sorted(entry.name for entry in path.iterdir()):
            yield from _walk(posixpath.join(base, child), cwd, follow)


def _plan(specs: Sequence[str], cwd: Path, follow: bool) -> tuple[list[_Planned], list[str]]:
    """The members to archive, and the names that do not fit a ustar header (skipped)."""
    planned: list[_Planned] = []
    skipped: list[str] = []
    for spec in specs:
        local = Path(spec) if spec.startswith("/") else cwd / spec
        if not os.path.lexists(local):
            raise HtarError(f"cannot stat {spec}: No such file or directory")
        for name, path in _walk(spec, cwd, follow):
            info = path.stat() if follow else path.lstat()
            linkname = ""
            if stat.S_ISDIR(info.st_mode):
                name = name.rstrip("/") + "/"
            elif stat.S_ISLNK(info.st_mode):
                linkname = str(path.readlink())
            elif not stat.S_ISREG(info.st_mode):
                print(f"HTAR: Warning: {name} is not a file, directory or link; skipped", file=sys.stderr)
                continue
            if not fits_ustar(name) or (linkname and not link_fits_ustar(linkname)):
                skipped.append(name)
                continue
            planned.append(_Planned(name, path, info, linkname))
    return planned, skipped


def _tarinfo(item: _Planned) -> tarfile.TarInfo:
    info = tarfile.TarInfo(item.name)
    st = item.info
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname, info.gname = user_name(st.st_uid), group_name(st.st_gid)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = item.linkname
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    return info


def _key(name: str) -> str:
    """Names as tarfile reads them back: directories lose their trailing slash."""
    return name.rstrip("/") or "/"


def _kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym():
        return "symlink"
    return "file"


def _add(tar: tarfile.TarFile, info: tarfile.TarInfo, stream: IO[bytes] | None, crc: bool) -> Member:
    # ustar headers as htar writes them; pax only where ustar cannot say it (a member of 8 GiB or more).
    tar.format = tarfile.PAX_FORMAT if info.size >= 8**11 else tarfile.USTAR_FORMAT
    start = tar.offset
    reader = _CrcReader(stream) if stream is not None else None
    tar.addfile(info, reader)  # tarfile only calls read()
    data_offset = tar.offset - _padded(info.size)
    checksum = (reader.crc if reader is not None else 0) if crc and info.isreg() else None
    return Member(
        name=info.name,
        kind=_kind(info),
        size=info.size,
        mode=info.mode,
        mtime=int(info.mtime),
        uid=info.uid,
        gid=info.gid,
        uname=info.uname,
        gname=info.gname,
        linkname=info.linkname,
        offset=start,
        data_offset=data_offset,
        crc32=checksum,
    )


def _consistency_info(members: int, total: int) -> tuple[tarfile.TarInfo, bytes]:
    now = int(time.time())
    name = f"{tempfile.gettempdir()}/{CONSISTENCY_PREFIX}{os.getpid()}_{now}"
    body = f"htar consistency file: {members} members, {total} bytes\n".encode().ljust(256, b"\0")
    info = tarfile.TarInfo(name)
    info.size = len(body)
    info.mode = 0o600
    info.mtime = now
    info.uid, info.gid = os.getuid(), os.getgid()
    info.uname, info.gname = user_name(info.uid), group_name(info.gid)
    return info, body


# --- the actions -----------------------------------------------------------------------------------------------


@dataclass
class Context:
    options: Options
    hpss: FakeHpss | None
    cwd: Path
    environ: Mapping[str, str]

    def archive_path(self) -> Path:
        if self.options.local_archive:
            return (
                Path(self.options.archive) if self.options.archive.startswith("/") else self.cwd / self.options.archive
            )
        assert self.hpss is not None
        self.hpss.ensure_home()
        return self.hpss.local(self.options.archive)

    def index_path(self) -> Path:
        archive = self.archive_path()
        chosen = self.options.index
        if not chosen:
            return archive.with_name(archive.name + ".idx")
        if chosen.startswith("."):
            return archive.with_name(archive.name + chosen)
        if self.options.local_archive:
            return Path(chosen) if chosen.startswith("/") else self.cwd / chosen
        assert self.hpss is not None
        return self.hpss.local(chosen)


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _read_specs(context: Context) -> list[str]:
    specs = list(context.options.files)
    if context.options.list_file:
        list_path = Path(context.options.list_file)
        if not list_path.is_absolute():
            list_path = context.cwd / list_path
        try:
            specs += [line.rstrip("\n") for line in list_path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise HtarError(f"cannot read -L list file {list_path}: {exc.strerror}") from None
    return specs


def create(context: Context) -> int:
    options = context.options
    started = time.monotonic()
    archive = context.archive_path()
    if not archive.parent.is_dir():
        if not options.create_dirs:
            raise HtarError(f"cannot create {options.archive}: No such file or directory (use -P to create folders)")
        archive.parent.mkdir(parents=True, exist_ok=True)
    planned, skipped = _plan(_read_specs(context), context.cwd, options.follow_links)
    limit = options.max_members or limit_from(context.environ, MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS)
    if len(planned) > limit:
        raise HtarError(f"{len(planned)} member files exceed the maximum of {limit} for one archive (see -M)")
    size_limit = limit_from(context.environ, MAX_MEMBER_BYTES_ENV, DEFAULT_MAX_MEMBER_BYTES)
    for item in planned:
        if stat.S_ISREG(item.info.st_mode) and item.info.st_size > size_limit:
            raise HtarError(f"{item.name}: {item.info.st_size} bytes exceeds the member size limit of {size_limit}")
    crc = options.crc or "crc" in options.verify
    members: list[Member] = []
    tmp = archive.with_name(f".{archive.name}.htar-{os.getpid()}")
    try:
        with tmp.open("wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for item in planned:
                info = _tarinfo(item)
                if info.isreg():
                    with item.path.open("rb") as stream:
                        members.append(_add(tar, info, stream, crc))
                else:
                    members.append(_add(tar, info, None, crc))
                if options.verbose:
                    _out(f"HTAR: a   {item.name}")
            total = sum(member.size for member in members)
            cf_info, cf_body = _consistency_info(len(members), total)
            consistency = _add(tar, cf_info, io.BytesIO(cf_body), crc)
            consistency.consistency = True
            members.append(consistency)
            if options.verbose:
                _out(f"HTAR: a   {cf_info.name}")
        written = tmp.stat().st_size
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    index = Index(options.archive, members, crc, time.time())
    index.write(context.index_path())
    for name in skipped:
        _err("INFO: " + NAME_TOO_LONG)
        _err(f"INFO: [{name}]")
    if options.verify:
        _verify(archive, index, options.verify, context.cwd)
    elapsed = max(time.monotonic() - started, 1e-6)
    files = sum(1 for member in members if member.kind == "file" and not member.consistency)
    _err(
        f"HTAR Create complete for {options.archive}. {written:,} bytes written for {files} member files, "
        f"max threads: 1 Transfer time: {elapsed:.3f} seconds ({written / elapsed / 1e6:.3f} MB/s)"
    )
    _err(SUCCESS_LINE)
    return EXIT_MEMBERS_SKIPPED if skipped else EXIT_OK


def _load_index(context: Context) -> tuple[Path, Index]:
    archive = context.archive_path()
    index_path = context.index_path()
    if not archive.is_file():
        raise HtarError(f"No such file: {context.options.archive}")
    if not index_path.is_file():
        raise HtarError(f"No such file: {context.options.archive}.idx")
    return archive, Index.load(index_path)


def _selected(members: Sequence[Member], patterns: Sequence[str]) -> tuple[list[Member], list[str]]:
    if not patterns:
        return list(members), []
    chosen: list[Member] = []
    unmatched: list[str] = []
    for pattern in patterns:
        base = pattern.rstrip("/")
        hits = [m for m in members if m.name.rstrip("/") == base or m.name.startswith(base + "/")]
        if not hits:
            unmatched.append(pattern)
        chosen += [m for m in hits if m not in chosen]
    return [m for m in members if m in chosen], unmatched


def listing_line(member: Member) -> str:
    """One line of ``htar -t`` output, in the real tool's layout."""
    type_bits = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(member.kind, stat.S_IFREG)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(member.mtime))
    name = f"{member.name} -> {member.linkname}" if member.kind == "symlink" else member.name
    mode = stat.filemode(type_bits | member.mode)
    return f"HTAR: {mode}  {member.uname}/{member.gname} {member.size:>10} {stamp}  {name}"


def list_archive(context: Context) -> int:
    _, index = _load_index(context)
    members, unmatched = _selected(index.members, context.options.files)
    for member in members:
        _out(listing_line(member))
    for pattern in unmatched:
        _err(f"HTAR: Warning: no match for {pattern} in {context.options.archive}")
    _err(SUCCESS_LINE)
    return EXIT_OK


def _safe_target(name: str, cwd: Path) -> Path:
    parts = name.split("/")
    if ".." in parts:
        raise HtarError(f"refusing to extract {name}: the name climbs with '..'")
    return Path(name) if name.startswith("/") else cwd / name.rstrip("/")


def extract(context: Context) -> int:
    options = context.options
    started = time.monotonic()
    archive, index = _load_index(context)
    wanted, unmatched = _selected([m for m in index.members if not m.consistency], options.files)
    if unmatched:
        raise HtarError("not found in archive: " + ", ".join(unmatched))
    by_name = {_key(member.name): member for member in wanted}
    check_crc = (options.crc or "crc" in options.verify) and index.crc
    read = 0
    count = 0
    files: list[tuple[Path, int]] = []
    folders: list[tuple[Path, int]] = []
    with tarfile.open(archive, mode="r:") as tar:
        for info in tar:
            member = by_name.get(_key(info.name))
            if member is None:
                continue
            target = _safe_target(info.name, context.cwd)
            if info.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif info.issym():
                target.parent.mkdir(parents=True, exist_ok=True)
                if os.path.lexists(target):
                    target.unlink()
                target.symlink_to(info.linkname)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(info)
                assert source is not None
                crc = 0
                with target.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        crc = zlib.crc32(chunk, crc)
                        out.write(chunk)
                if check_crc and member.crc32 is not None and crc != member.crc32:
                    raise HtarError(f"CRC mismatch for {info.name}: archive {crc:08x}, index {member.crc32:08x}")
                read += info.size
            if not info.issym():
                if options.preserve_modes:
                    target.chmod(info.mode)
                if options.keep_mtime:
                    # A folder's time is set last: extracting into it changes it.
                    (folders if info.isdir() else files).append((target, int(info.mtime)))
            count += 1
            if options.verbose:
                blocks = _padded(info.size) // tarfile.BLOCKSIZE + 1
                _out(f"HTAR: x {member.name}, {info.size} bytes, {blocks} media blocks")
    for target, mtime in files + sorted(folders, reverse=True):
        os.utime(target, (mtime, mtime))
    elapsed = max(time.monotonic() - started, 1e-6)
    _err(
        f"HTAR: Extract complete for {options.archive}, {count} files. total bytes read: {read:,} in "
        f"{elapsed:.3f} seconds ({read / elapsed / 1e6:.3f} MB/s )"
    )
    _err(SUCCESS_LINE)
    return EXIT_OK


def _verify(archive: Path, index: Index, checks: set[str], cwd: Path) -> None:
    """Check the archive against its index: headers (info), CRCs (crc), local files (compare)."""
    expected = {_key(member.name): member for member in index.members}
    seen: set[str] = set()
    with tarfile.open(archive, mode="r:") as tar:
        for info in tar:
            member = expected.get(_key(info.name))
            if member is None:
                raise HtarError(f"verify: {info.name} is in the archive but not in the index")
            seen.add(_key(info.name))
            if "info" in checks and (info.size != member.size or _kind(info) != member.kind):
                raise HtarError(f"verify: the header of {info.name} does not match the index")
            if info.isreg() and ("crc" in checks or "compare" in checks):
                source = tar.extractfile(info)
                assert source is not None
                crc = 0
                compare = "compare" in checks and not member.consistency
                local = _safe_target(info.name, cwd).open("rb") if compare else None
                try:
                    while chunk := source.read(1 << 20):
                        crc = zlib.crc32(chunk, crc)
                        if local is not None and local.read(len(chunk)) != chunk:
                            raise HtarError(f"verify: {info.name} differs from the local file")
                finally:
                    if local is not None:
                        local.close()
                if "crc" in checks and member.crc32 is not None and crc != member.crc32:
                    raise HtarError(f"verify: CRC mismatch for {info.name}")
    missing = set(expected) - seen
    if missing:
        raise HtarError(f"verify: {len(missing)} indexed members are missing from the archive")


def verify_archive(context: Context) -> int:
    archive, index = _load_index(context)
    checks = set(context.options.verify) or {"info"}
    if context.options.crc:
        checks.add("crc")
    checks.discard("compare")
    _verify(archive, index, checks, context.cwd)
    if context.options.verbose:
        for member in index.members:
            if not member.consistency:
                _out(f"{member.name} {member.size} bytes, {_padded(member.size) // tarfile.BLOCKSIZE} blocks")
    _err(SUCCESS_LINE)
    return EXIT_OK


def rebuild_index(context: Context) -> int:
    archive = context.archive_path()
    if not archive.is_file():
        raise HtarError(f"No such file: {context.options.archive}")
    members: list[Member] = []
    with tarfile.open(archive, mode="r:") as tar:
        for info in tar:
            crc: int | None = None
            if context.options.crc and info.isreg():
                source = tar.extractfile(info)
                assert source is not None
                crc = 0
                while chunk := source.read(1 << 20):
                    crc = zlib.crc32(chunk, crc)
            members.append(
                Member(
                    name=info.name + "/" if info.isdir() else info.name,
                    kind=_kind(info),
                    size=info.size,
                    mode=info.mode,
                    mtime=int(info.mtime),
                    uid=info.uid,
                    gid=info.gid,
                    uname=info.uname,
                    gname=info.gname,
                    linkname=info.linkname,
                    offset=info.offset,
                    data_offset=info.offset_data,
                    crc32=crc,
                    consistency=posixpath.basename(info.name).startswith(CONSISTENCY_PREFIX),
                )
            )
    Index(context.options.archive, members, context.options.crc, time.time()).write(context.index_path())
    _err(SUCCESS_LINE)
    return EXIT_OK


_RUN = {"c": create, "t": list_archive, "x": extract, "K": verify_archive, "X": rebuild_index}


def main(
    argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    try:
        options = parse_args(args)
    except UsageError as exc:
        _err(f"htar: {exc}")
        _err("usage: htar -{c|t|x|K|X} -f Archive [-v] [-P] [-h] [-L listfile] [-M maxfiles] [-H opt[:opt...]] [files]")
        return EX_USAGE
    try:
        hpss = None if options.local_archive else FakeHpss.from_environment(env)
        context = Context(options, hpss, cwd or Path.cwd(), env)
        return _RUN[options.action](context)
    except (HtarError, HpssUnavailable, ValueError) as exc:
        _err(f"HTAR: ERROR: {exc}")
    except OSError as exc:
        _err(f"HTAR: ERROR: {exc.filename or ''}: {exc.strerror}")
    _err(FAILURE_LINE)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
