"""Archive planning, pure: which files go into which bundle, under which name. No I/O, no clock.

A proposal's files are grouped by ALS beam cycle (1: Jan 1 to Jul 15, 2: Jul 16 to Dec 31, by each file's
mtime as a local date at the facility), bundled as ``<proposal>_<YYYY>-<cycle>.tar`` in
``<beamline>/raw/<proposal>/``, and split into ``..._partN.tar`` above ``part_size``. Files above
``large_file`` go to the archive on their own (``hsi cput``), as htar cannot hold them. Bundles are
immutable: files already in a bundle are not planned again, and new files of an archived cycle start the
next part after the highest one that exists. A scan's files stay in one part unless the scan alone is
too big (or has too many files) for one. htar's limits are checked here, before anything is submitted,
and every file that breaks one is named at once.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from datetime import datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from beamflow.common.archive_config import GIB, TIB
from beamflow.common.archive_model import BundlePlan, Cycle, ExistingBundle, MemberFile
from beamflow.common.errors import PermanentError
from pydantic import BaseModel, ConfigDict

#: Cycle boundaries are dates on the facility's calendar, not UTC: a file written at 20:00 on July 15 in
#: Berkeley belongs to cycle 1 although it is already July 16 in UTC.
FACILITY_ZONE: Final = ZoneInfo("America/Los_Angeles")
CYCLE_ONE_ENDS: Final = (7, 15)


class ArchivePlanError(PermanentError):
    """Files that cannot go into an archive as they are; the message names every one and the limit."""


class HtarLimits(BaseModel):
    """htar's member limits (ustar headers): a name of at most 99 bytes, or a name of at most 99 bytes after
    a prefix of at most 154 bytes split at a '/'; a member count; a member size (~68 GB)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name_bytes: int = 99
    prefix_bytes: int = 154
    members: int = 1_000_000
    member_bytes: int = 68 * 1000**3


def cycle_of(mtime: float, zone: tzinfo = FACILITY_ZONE) -> Cycle:
    day = datetime.fromtimestamp(mtime, zone).date()
    return Cycle(year=day.year, number=1 if (day.month, day.day) <= CYCLE_ONE_ENDS else 2)


def bundle_directory(beamline: str, proposal: str) -> str:
    return f"{beamline}/raw/{proposal}"


def bundle_name(proposal: str, cycle: Cycle, part: int = 1) -> str:
    suffix = "" if part == 1 else f"_part{part}"
    return f"{proposal}_{cycle.label}{suffix}.tar"


def part_of(proposal: str, cycle: Cycle, name: str) -> int | None:
    """The part number of an existing bundle of this proposal and cycle, or None if it is not one."""
    stem = f"{proposal}_{cycle.label}"
    if name == f"{stem}.tar":
        return 1
    if name.startswith(f"{stem}_part") and name.endswith(".tar"):
        number = name[len(stem) + len("_part") : -len(".tar")]
        return int(number) if number.isdigit() else None
    return None


def fits_htar(path: str, limits: HtarLimits) -> bool:
    """Whether ``path`` fits a ustar header: short enough, or splittable at a '/' into prefix and name."""
    raw = path.encode()
    if len(raw) <= limits.name_bytes:
        return True
    for i, byte in enumerate(raw):
        if byte == ord("/") and i <= limits.prefix_bytes and 0 < len(raw) - i - 1 <= limits.name_bytes:
            return True
    return False


def members_missing(plan: BundlePlan, listed: list[str]) -> list[str]:
    """The plan's members a listing of its bundle does not show (verification of a written bundle)."""
    present = set(listed)
    return [m.path for m in plan.members if m.path not in present]


def plan_archive(
    beamline: str,
    proposal: str,
    files: list[MemberFile],
    existing: list[ExistingBundle],
    *,
    part_size: int = 2 * TIB,
    large_file: int = 65 * GIB,
    limits: HtarLimits | None = None,
    zone: tzinfo = FACILITY_ZONE,
) -> list[BundlePlan]:
    limits = limits or HtarLimits()
    archived = {member for bundle in existing for member in bundle.members}
    todo = sorted({f.path: f for f in files if f.path not in archived}.values(), key=lambda f: f.path)
    _check_limits(todo, large_file, limits)
    directory = bundle_directory(beamline, proposal)
    taken = {bundle.name for bundle in existing}
    plans: list[BundlePlan] = []
    for member in (f for f in todo if f.size > large_file):
        name = _free_name(posixpath.basename(member.path), taken)
        taken.add(name)
        cycle = cycle_of(member.mtime, zone)
        plans.append(_plan(beamline, proposal, cycle, directory, name, "hsi", [member]))
    by_cycle: dict[Cycle, list[MemberFile]] = defaultdict(list)
    for member in (f for f in todo if f.size <= large_file):
        by_cycle[cycle_of(member.mtime, zone)].append(member)
    for cycle in sorted(by_cycle, key=lambda c: (c.year, c.number)):
        parts = [p for name in taken if (p := part_of(proposal, cycle, name)) is not None]
        next_part = max(parts, default=0) + 1
        for group in _pack(by_cycle[cycle], part_size, limits.members):
            name = bundle_name(proposal, cycle, next_part)
            taken.add(name)
            plans.append(_plan(beamline, proposal, cycle, directory, name, "htar", group))
            next_part += 1
    return plans


def _plan(
    beamline: str, proposal: str, cycle: Cycle, directory: str, name: str, kind: str, members: list[MemberFile]
) -> BundlePlan:
    return BundlePlan.model_validate(
        {
            "beamline": beamline,
            "proposal": proposal,
            "cycle": cycle,
            "directory": directory,
            "name": name,
            "kind": kind,
            "members": members,
        }
    )


def _free_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name.2``, ``name.3``... when two large files share a base name (deterministic, as the
    files arrive sorted by path)."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}.{n}"
    return candidate


def _pack(members: list[MemberFile], part_size: int, max_members: int) -> list[list[MemberFile]]:
    """Parts in path order, each scan's files together; a scan too big for one part is split file by file."""
    scans: dict[str, list[MemberFile]] = defaultdict(list)
    for member in members:
        scans[member.scan_id].append(member)
    ordered = sorted(scans.values(), key=lambda group: group[0].path)
    parts: list[list[MemberFile]] = []
    current: list[MemberFile] = []
    size = 0

    def fits(extra_size: int, extra_count: int) -> bool:
        return size + extra_size <= part_size and len(current) + extra_count <= max_members

    for scan in ordered:
        scan_size = sum(m.size for m in scan)
        whole = scan_size <= part_size and len(scan) <= max_members
        if whole:
            if current and not fits(scan_size, len(scan)):
                parts.append(current)
                current, size = [], 0
            current += scan
            size += scan_size
            continue
        for member in scan:  # the scan alone exceeds a part: unavoidable split, file by file
            if current and not fits(member.size, 1):
                parts.append(current)
                current, size = [], 0
            current.append(member)
            size += member.size
    if current:
        parts.append(current)
    return parts


def _check_limits(files: list[MemberFile], large_file: int, limits: HtarLimits) -> None:
    problems: list[str] = []
    for member in files:
        if member.size > large_file:
            continue  # sent on its own with hsi, which has no member limits
        if not fits_htar(member.path, limits):
            problems.append(
                f"{member.path}: {len(member.path.encode())} bytes is too long a member name for htar (at most "
                f"{limits.name_bytes} bytes, or {limits.name_bytes} after a '/'-split prefix of "
                f"{limits.prefix_bytes})"
            )
        if member.size > limits.member_bytes:
            problems.append(f"{member.path}: {member.size} bytes is over htar's member limit of {limits.member_bytes}")
    if problems:
        raise ArchivePlanError(
            f"{len(problems)} file(s) cannot be archived as they are; nothing was submitted:\n  - "
            + "\n  - ".join(problems)
            + "\nRename them (shorter folders or names), or lower archive.large_file so they go alone, and replay"
        )
