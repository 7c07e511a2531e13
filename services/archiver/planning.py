"""Archive planning: which of a proposal's files go into which archive object, under which name.

Pure logic, no I/O and no clock, so every rule below is tested directly and the archiver only carries plans
out. A plan is decided, and htar's limits are checked, before anything is submitted: a tape job that fails
half-way (or an htar that skips a name and still prints "HTAR SUCCESSFUL") is far costlier than a dead letter
that names every file to fix.

The rules, after the seed's HPSS transfer (orchestration/hpss.py), with its gaps closed:

* Files are grouped by ALS beam cycle (1: Jan 1 to Jul 15, 2: Jul 16 to Dec 31) of their mtime, read as a
  local date at the facility.
* A cycle's files go into htar bundles ``<beamline>/raw/<proposal>/<proposal>_<YYYY>-<cycle>.tar``, split
  when a bundle would exceed ``part_size`` (2 TiB) or htar's member count. The seed names the first bundle
  without a suffix and the next ones ``_part1``, ``_part2``... (its docstring says ``_part0`` but its script
  never writes one), and so do we: archives the seed wrote are read and continued correctly.
* A file above ``large_file`` (65 GiB, the seed's threshold), or above htar's member size, is stored alone with
  ``hsi cput`` under its own base name.
* Bundles are immutable (htar cannot append): files already in any existing bundle are not planned again, and
  new files of a cycle go to parts numbered after the highest part that exists.
* A scan's files share a part whenever the scan fits in one.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Final, Literal
from zoneinfo import ZoneInfo

from beamflow.common.archive_config import GIB, TIB
from beamflow.common.archive_model import BundlePlan, Cycle, ExistingBundle, MemberFile
from beamflow.common.errors import PermanentError
from pydantic import BaseModel, ConfigDict, Field

#: Cycle boundaries are dates on the facility's calendar, not UTC: a file written at 20:00 on July 15 in
#: Berkeley belongs to cycle 1 although it is already July 16 in UTC. The zone is a parameter so a test (or
#: another facility) can say which calendar it means; the default never depends on the host's TZ.
FACILITY_ZONE: Final = ZoneInfo("America/Los_Angeles")
#: The last (month, day) of cycle 1, inclusive.
CYCLE_ONE_ENDS: Final = (7, 15)
#: htar writes ``X.tar.idx`` beside ``X.tar`` (so does the local tar archive): no object may take such a name.
INDEX_SUFFIX: Final = ".idx"
#: htar stores a member's size in all 12 bytes of the ustar size field as octal digits: 8**12 - 1 bytes,
#: NERSC's "about 68 GB" (64 GiB - 1). The seed's 65 GiB threshold is above it, so a file between the two
#: would make htar fail; the planner sends such files to hsi as well.
HTAR_MAX_MEMBER_BYTES: Final = 8**12 - 1

_CYCLE_LABEL = re.compile(r"(?P<year>[0-9]{4})-(?P<number>[12])")
#: What can stop a plan, in the order the error reports them (each kind has its own advice).
_Problem = Literal["folder", "clash", "path", "name"]
_PROBLEMS: Final[tuple[_Problem, ...]] = ("folder", "clash", "path", "name")


class ArchivePlanError(PermanentError):
    """Files that cannot be archived as they are: the message names every one, the limit it breaks, and what
    the operator can do. Permanent: replaying the same files cannot succeed until they are renamed."""

    def __init__(self, where: str, problems: list[str], advice: list[str]) -> None:
        self.problems = problems
        lines = [f"{len(problems)} problem(s) prevent archiving into {where}; nothing was planned or submitted:"]
        lines += [f"  - {problem}" for problem in problems]
        lines += ["What to do:"] + [f"  * {line}" for line in advice] + ["  * then replay the message."]
        super().__init__("\n".join(lines))


class HtarLimits(BaseModel):
    """htar's limits on what one bundle may hold.

    Names: a ustar header has a 100-byte name field and a 155-byte prefix field; htar keeps one byte of each
    for a terminating NUL, hence 99 and 154 (the numbers NERSC documents). Lengths are UTF-8 bytes. Raise
    them only for a tar that is known to take more.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name_bytes: int = Field(default=99, gt=0, description="Longest name after the '/' a long path is split at.")
    prefix_bytes: int = Field(default=154, ge=0, description="Longest prefix before that '/'.")
    members: int = Field(default=1_000_000, gt=0, description="Most members in one bundle (htar's default).")
    member_bytes: int = Field(default=HTAR_MAX_MEMBER_BYTES, gt=0, description="Largest member file.")


# -- cycles ------------------------------------------------------------------------------------------------


def cycle_of(mtime: float, zone: tzinfo = FACILITY_ZONE) -> Cycle:
    """The beam cycle a file modified at ``mtime`` (POSIX seconds) belongs to, by its local date in ``zone``."""
    year, number = _cycle_key(mtime, zone)
    return Cycle(year=year, number=1 if number == 1 else 2)


def _cycle_key(mtime: float, zone: tzinfo) -> tuple[int, int]:
    # (year, number) without building a model: the planner sorts a proposal's files (maybe a million) by it.
    day = datetime.fromtimestamp(mtime, zone)
    return day.year, 1 if (day.month, day.day) <= CYCLE_ONE_ENDS else 2


def cycle_bounds(cycle: Cycle, zone: tzinfo = FACILITY_ZONE) -> tuple[datetime, datetime]:
    """When ``cycle`` starts (inclusive) and ends (exclusive), as aware datetimes at local midnight in ``zone``:
    what an end-of-cycle archive is scheduled at."""
    month, day = CYCLE_ONE_ENDS
    second_starts = datetime(cycle.year, month, day + 1, tzinfo=zone)
    if cycle.number == 1:
        return datetime(cycle.year, 1, 1, tzinfo=zone), second_starts
    return second_starts, datetime(cycle.year + 1, 1, 1, tzinfo=zone)


def parse_cycle(label: str) -> Cycle:
    """``'2026-1'`` -> ``Cycle(year=2026, number=1)`` (an operator's ``--cycle``); ValueError otherwise."""
    match = _CYCLE_LABEL.fullmatch(label.strip())
    if match is None:
        raise ValueError(f"{label!r} is not a beam cycle: write YYYY-1 (Jan 1 - Jul 15) or YYYY-2 (Jul 16 - Dec 31)")
    return Cycle(year=int(match["year"]), number=1 if match["number"] == "1" else 2)


# -- names -------------------------------------------------------------------------------------------------


def bundle_directory(beamline: str, proposal: str) -> str:
    """The archive folder of a proposal's bundles, relative to the archive's root (the seed's layout)."""
    return f"{beamline}/raw/{proposal}"


def bundle_name(proposal: str, cycle: Cycle, part: int = 1) -> str:
    """The name of the ``part``-th htar bundle (1 = the first) of a proposal's cycle.

    As the seed names them: the first has no suffix, the second is ``_part1``, the third ``_part2``... so
    ``bundle_name(p, c, 2)`` is ``<p>_<YYYY>-<n>_part1.tar``.
    """
    if part < 1:
        raise ValueError(f"part {part}: bundles of a cycle are counted from 1")
    suffix = "" if part == 1 else f"_part{part - 1}"
    return f"{proposal}_{cycle.label}{suffix}.tar"


def part_of(proposal: str, cycle: Cycle, name: str) -> int | None:
    """Which part (1 = the first, as in ``bundle_name``) of the proposal's cycle ``name`` is, or None when it
    is not one of that cycle's bundle names. A ``_part0`` (the seed's docstring) counts as a first part."""
    stem = f"{proposal}_{cycle.label}"
    if name == f"{stem}.tar":
        return 1
    if name.startswith(f"{stem}_part") and name.endswith(".tar"):
        digits = name[len(stem) + len("_part") : -len(".tar")]
        if digits.isascii() and digits.isdigit():
            return int(digits) + 1
    return None


def _is_bundle_name(proposal: str, name: str) -> bool:
    """Whether ``name`` is an htar bundle name of any cycle of ``proposal``."""
    return re.fullmatch(re.escape(proposal) + r"_[0-9]+-[12](_part[0-9]+)?\.tar", name) is not None


def _alone_name(path: str, proposal: str, taken: set[str]) -> str:
    """The archive name of a file stored alone: its base name, made unique in the folder.

    Two large files may share a base name (``a/frame.h5``, ``b/frame.h5``); called in path order, the first
    free one keeps it and the next get ``frame_2.h5``, ``frame_3.h5``... (the extension stays last, so the
    object still reads as what it is). Names the folder reserves are avoided the same way: a bundle name of
    this proposal (a large ``ALS-1_2026-1.tar`` must not squat a future part), an index name, or a name whose
    index would clash with an existing object. A hidden name gets a ``_`` in front: archive folders hide
    dot-names (writes in progress live there).
    """
    base = posixpath.basename(path)
    if base.startswith("."):
        base = "_" + base
    stem, ext = posixpath.splitext(base)
    if ext == INDEX_SUFFIX:  # the counter must not end up before '.idx', or the name would stay reserved
        stem, ext = base, ""
    candidate, n = base, 1
    while (
        candidate in taken
        or candidate + INDEX_SUFFIX in taken
        or candidate.endswith(INDEX_SUFFIX)
        or _is_bundle_name(proposal, candidate)
    ):
        n += 1
        candidate = f"{stem}_{n}{ext}"
    return candidate


# -- htar's name rule --------------------------------------------------------------------------------------


def _name_problem(path: str, limits: HtarLimits) -> str | None:
    """Why htar cannot store ``path`` as a member name, or None when it can.

    The ustar rule with htar's numbers: a name of at most ``name_bytes`` bytes is stored as is; a longer one
    must be split at a '/' into a prefix of at most ``prefix_bytes`` and a non-empty rest of at most
    ``name_bytes``. The leftmost '/' that leaves a short enough rest gives the shortest prefix, so if that
    prefix is too long, every split is.
    """
    raw = path.encode("utf-8", "surrogateescape")
    if len(raw) <= limits.name_bytes:
        return None
    last = raw.rfind(b"/")
    tail = len(raw) - last - 1
    if tail > limits.name_bytes or tail == 0:
        return (
            f"its last component is {tail} bytes; htar stores at most {limits.name_bytes} bytes after a '/' "
            f"(and {limits.name_bytes} bytes in all without one); the path is {len(raw)} bytes"
        )
    # The last '/' qualifies (checked above), so there is a leftmost one.
    index = next(i for i in range(last + 1) if raw[i] == ord("/") and len(raw) - i - 1 <= limits.name_bytes)
    if index <= limits.prefix_bytes:
        return None
    return (
        f"the path is {len(raw)} bytes and its shortest split leaves {index} bytes of folders before the last "
        f"{len(raw) - index - 1}; htar takes at most {limits.prefix_bytes} bytes before a '/' and "
        f"{limits.name_bytes} after it"
    )


def fits_htar(path: str, limits: HtarLimits | None = None) -> bool:
    """Whether htar can store ``path`` as a member name (see ``HtarLimits``)."""
    return _name_problem(path, limits or HtarLimits()) is None


def _path_problem(path: str) -> str | None:
    """Why ``path`` is not a canonical relative member path (what htar would store and list back), or None."""
    if not path or "\0" in path:
        return "it is empty or contains a NUL byte"
    if path.startswith("/"):
        return "it is absolute; members are paths relative to the archive source"
    parts = path.split("/")
    if "" in parts or "." in parts or ".." in parts:
        return "it has an empty, '.' or '..' component (or a trailing '/'); members must be canonical"
    return None


# -- verification ------------------------------------------------------------------------------------------


def members_missing(plan: BundlePlan, listed: Iterable[str]) -> list[str]:
    """The plan's member paths a listing of its written bundle does not show, in plan order.

    ``listed`` is what the archive lists for the bundle (``htar -tf``; for an object stored alone, the member
    path recorded with it). Names are compared exactly: members are canonical, and htar lists names as given.
    """
    present = set(listed)
    return [member.path for member in plan.members if member.path not in present]


# -- planning ----------------------------------------------------------------------------------------------


def plan_archive(
    beamline: str,
    proposal: str,
    files: list[MemberFile],
    existing: list[ExistingBundle],
    *,
    part_size: int = 2 * TIB,
    large_file: int = 65 * GIB,
    limits: HtarLimits = HtarLimits(),
    zone: tzinfo = FACILITY_ZONE,
) -> list[BundlePlan]:
    """The archive objects to write for ``files`` of one proposal, given the bundles that already exist.

    Returns htar bundles and files stored alone, ordered by cycle, then the cycle's htar parts in part order,
    then its files stored alone in path order. The same inputs in any order give the same plans. Files already
    in an ``existing`` bundle are left out; none of the planned names is taken. Raises ``ArchivePlanError``
    naming every file that cannot be archived (a name htar cannot store, a path that is not canonical, a path
    given twice with different details) before anything is planned.
    """
    if part_size <= 0 or large_file <= 0:
        raise ValueError(f"part_size ({part_size}) and large_file ({large_file}) must be positive")
    archived = {member for bundle in existing for member in bundle.members}
    todo, clashes = _unique([f for f in files if f.path not in archived])
    # A file htar cannot hold is sent alone, whichever limit is lower: 65 GiB (the seed) or htar's own.
    alone_above = min(large_file, limits.member_bytes)
    problems: dict[_Problem, list[str]] = {"clash": clashes, "path": [], "name": [], "folder": []}
    for member in todo:
        if (problem := _path_problem(member.path)) is not None:
            problems["path"].append(f"{member.path} (scan {member.scan_id}): {problem}")
        elif member.size <= alone_above and (problem := _name_problem(member.path, limits)) is not None:
            problems["name"].append(f"{member.path} (scan {member.scan_id}): {problem}")
    for value, what in ((beamline, "beamline"), (proposal, "proposal")):
        if _path_problem(value) is not None or "/" in value:
            problems["folder"].append(f"{what} {value!r} is not a single folder name")
    if any(problems.values()):
        raise ArchivePlanError(
            bundle_directory(beamline, proposal),
            [line for kind in _PROBLEMS for line in problems[kind]],
            [_advice(kind, limits) for kind in _PROBLEMS if problems[kind]],
        )

    directory = bundle_directory(beamline, proposal)
    taken = {bundle.name for bundle in existing}
    by_cycle: dict[tuple[int, int], list[MemberFile]] = defaultdict(list)
    for member in todo:
        by_cycle[_cycle_key(member.mtime, zone)].append(member)

    plans: list[BundlePlan] = []
    for year, number in sorted(by_cycle):
        cycle = Cycle(year=year, number=1 if number == 1 else 2)
        members = by_cycle[(year, number)]
        # After the highest part that exists, never into a gap: a missing part may be a write in progress,
        # or a bundle someone removed on purpose; either way its name is not ours to reuse.
        part = 1 + max((p for name in taken if (p := part_of(proposal, cycle, name)) is not None), default=0)
        for group in _pack([m for m in members if m.size <= alone_above], part_size, limits.members):
            while (name := bundle_name(proposal, cycle, part)) in taken or name + INDEX_SUFFIX in taken:
                part += 1
            taken.add(name)
            plans.append(_plan(beamline, proposal, cycle, directory, name, "htar", group))
            part += 1
        for member in (m for m in members if m.size > alone_above):
            name = _alone_name(member.path, proposal, taken)
            taken.add(name)
            plans.append(_plan(beamline, proposal, cycle, directory, name, "hsi", [member]))
    return plans


def _unique(files: list[MemberFile]) -> tuple[list[MemberFile], list[str]]:
    """``files`` sorted by path, a file given twice kept once; the same path with different details (size,
    mtime, scan, checksum) is a problem: which scan would the archive vouch for?"""
    by_path: dict[str, MemberFile] = {}
    clashes: dict[str, set[MemberFile]] = defaultdict(set)
    for member in files:
        first = by_path.setdefault(member.path, member)
        if first is not member and first != member:
            clashes[member.path] |= {first, member}
    problems = [
        f"{path}: given {len(variants)} times with different details ("
        + "; ".join(
            sorted(f"scan {v.scan_id}, {v.size} bytes, mtime {v.mtime}, checksum {v.checksum}" for v in variants)
        )
        + ")"
        for path, variants in sorted(clashes.items())
    ]
    return [by_path[path] for path in sorted(by_path)], problems


def _advice(kind: _Problem, limits: HtarLimits) -> str:
    if kind == "name":
        return (
            "rename the files or folders named above so each path fits htar's member names (at most "
            f"{limits.name_bytes} bytes after a '/', at most {limits.prefix_bytes} bytes of folders before it; "
            "paths are relative to the archive source), or raise HtarLimits.name_bytes/prefix_bytes if the "
            "archive's tar takes longer names"
        )
    if kind == "path":
        return "fix the paths the scans reported: plain relative paths, without '.', '..' or empty components"
    if kind == "clash":
        return "a file belongs to one scan only: correct the ledger records of the scans named above"
    return "fix the beamline name, or the archive policy's proposal_pattern, so that each is one folder name"


def _plan(
    beamline: str,
    proposal: str,
    cycle: Cycle,
    directory: str,
    name: str,
    kind: Literal["htar", "hsi"],
    members: list[MemberFile],
) -> BundlePlan:
    return BundlePlan(
        beamline=beamline,
        proposal=proposal,
        cycle=cycle,
        directory=directory,
        name=name,
        kind=kind,
        members=members,
    )


def _scans(members: list[MemberFile]) -> list[list[MemberFile]]:
    """``members`` (sorted by path) grouped by scan, scans ordered by their first path."""
    scans: dict[str, list[MemberFile]] = {}
    for member in members:
        scans.setdefault(member.scan_id, []).append(member)
    return list(scans.values())  # dicts keep insertion order: the order of each scan's first path


def _span(scan: list[MemberFile], part_size: int, max_members: int, size: int, count: int) -> int:
    """How many parts ``scan`` touches when packed file by file after an open part of ``size`` bytes and
    ``count`` files."""
    touched, fresh = 0, True
    for member in scan:
        if count and (size + member.size > part_size or count + 1 > max_members):
            size, count, fresh = 0, 0, True
        if fresh:
            touched, fresh = touched + 1, False
        size, count = size + member.size, count + 1
    return touched


def _pack(members: list[MemberFile], part_size: int, max_members: int) -> list[list[MemberFile]]:
    """One cycle's htar members split into parts of at most ``part_size`` bytes and ``max_members`` files.

    Scans are taken in path order and parts filled in turn ("next fit"), so neighbouring folders share
    bundles and a restore reads few of them. Sizes are file bytes; tar's headers and padding (about 1 KiB a
    member) are noise next to 2 TiB. The rule for scans:

    * a scan that fits in one part is never split: it starts a new part if the open one lacks the room;
    * a scan too big for any part is split file by file (unavoidable), starting in the open part only if that
      does not make it touch more parts than starting a new one; its last part stays open for the next scan;
    * a single file bigger than ``part_size`` thus ends up alone in its part.
    """
    parts: list[list[MemberFile]] = []
    current: list[MemberFile] = []
    size = 0

    def close() -> None:
        nonlocal current, size
        if current:
            parts.append(current)
        current, size = [], 0

    for scan in _scans(members):
        scan_size = sum(member.size for member in scan)
        if scan_size <= part_size and len(scan) <= max_members:
            if size + scan_size > part_size or len(current) + len(scan) > max_members:
                close()
            current += scan
            size += scan_size
            continue
        if _span(scan, part_size, max_members, size, len(current)) > _span(scan, part_size, max_members, 0, 0):
            close()
        for member in scan:
            if current and (size + member.size > part_size or len(current) + 1 > max_members):
                close()
            current.append(member)
            size += member.size
    close()
    return parts
