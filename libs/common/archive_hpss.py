"""NERSC HPSS as an archive backend: every step is a Slurm job, submitted and followed with sfapi-client.

A job's output cannot be read back through the API, so each script checks what it did itself and answers
with its exit status (the table below); every path in a script is shell-quoted (the seed's scripts broke
on spaces), and the expected members travel inside the script as a quoted here-document.

- write: ``hsi mkdir -p``, refuse if the bundle exists (never overwrite), ``htar -cvf ... -Hcrc -L list`` (any
  non-zero exit fails, htar's 70 for skipped names included), then ``htar -tf`` compared name by name and
  size by size with the plan. An hsi plan is ``hsi cput`` and ``hsi ls -l`` for its size.
- state: the same comparison on an existing bundle (absent / verified / does not verify).
- listing (``members``, ``bundles``, whole-bundle restores): the job writes ``htar -tf`` / ``hsi ls -l`` output to
  a file in the endpoint's ``listing_dir``, which is then read back with the API's download utility. Listings
  older than a day are removed by the next listing job.

Exit statuses of our scripts: 0 verified, 3 absent, 4 exists but does not match the plan, 10 the source
folder is missing at the site, 11 ``hsi mkdir`` failed, 12 the bundle already exists (write refused), any
other: the tool's own status (htar 70: names skipped).
"""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from typing import Final, Literal

from beamflow.common.archive_backend import (
    ArchiveWriteFailed,
    BundleExists,
    BundleNotFound,
    BundleUnverified,
    MemberNotInBundle,
    RestoreConflict,
)
from beamflow.common.archive_model import BundlePlan, BundleState, ExistingBundle, MemberEntry
from beamflow.common.endpoints import HpssEndpoint, check_relative
from beamflow.common.errors import UnsupportedEndpoint
from beamflow.common.sfapi_session import download_text, sfapi_compute

VERIFIED: Final = 0
ABSENT: Final = 3
MISMATCH: Final = 4
NO_SOURCE: Final = 10
NO_FOLDER: Final = 11
EXISTS: Final = 12
HTAR_SKIPPED: Final = 70

# The htar listing line: "HTAR: -rw-r--r--  user/group       1234 2024-05-01 12:00  name" -> "1234 name";
# htar's own consistency file (``<tmpdir>/HTAR_CF_CHK_<pid>_<time>``) is listed too and is left out.
_CONSISTENCY_FILE: Final = r"[ /]HTAR_CF_CHK_[0-9]+_[0-9]+$"
_HTAR_LINE: Final = r"^HTAR: -[-rwxsStT]{9}  [^ ]+/[^ ]+ +([0-9]+) [0-9-]{10} [0-9:]{5}  (.*)$"
# The same line read in the job's shell (sed -E) and here; '|' delimits sed's s command: no '/' to escape.
_LISTING_TO_SIZE_NAME: Final = f"s|{_HTAR_LINE}|\\1 \\2|p"
_HTAR_MEMBER: Final = re.compile(_HTAR_LINE)
# hsi's long listing: "-rw-r--r--    1 alsdev    als        1234 May 01 12:00 /home/.../name".
_HSI_LONG: Final = re.compile(r"^-[-rwxsStT]{9} +[0-9]+ +[^ ]+ +[^ ]+ +([0-9]+) +\w{3} +[0-9]+ +[0-9:]+ (.*)$")
LISTING_PREFIX: Final = "beamflow-listing-"


def parse_htar_listing(text: str) -> list[MemberEntry]:
    """The members of an ``htar -tf`` listing, without htar's own consistency file."""
    entries = []
    for line in text.splitlines():
        match = _HTAR_MEMBER.match(line)
        if match and not re.search(_CONSISTENCY_FILE, match.group(2)):
            entries.append(MemberEntry(name=match.group(2), size=int(match.group(1))))
    return entries


def parse_hsi_size(text: str) -> int | None:
    """The size in an ``hsi ls -l`` line of one file, None when there is none."""
    for line in text.splitlines():
        match = _HSI_LONG.match(line.strip())
        if match:
            return int(match.group(1))
    return None


def directives(endpoint: HpssEndpoint, job_name: str) -> list[str]:
    """The ``#SBATCH`` lines of every HPSS job: the xfer QOS, account, constraint, licenses and time."""
    slurm = endpoint.slurm
    return [
        f"#SBATCH -q {slurm.qos}",
        f"#SBATCH -A {slurm.account}",
        f"#SBATCH -C {slurm.constraint}",
        f"#SBATCH --licenses={slurm.licenses}",
        f"#SBATCH -t {slurm.time}",
        f"#SBATCH -J beamflow-{job_name}",
    ]


def render(plan: BundlePlan, endpoint: HpssEndpoint, source_root: str, mode: str) -> str:
    """The Slurm script for ``mode`` of ``plan``: "write", "state" (the bundle is exactly the plan), or
    "members" (the plan's members are in the bundle, with their sizes: the pruner's fresh check)."""
    target = f"{endpoint.root.rstrip('/')}/{plan.path}"
    folder = f"{endpoint.root.rstrip('/')}/{plan.directory}"
    expected = "\n".join(f"{m.size} {m.path}" for m in sorted(plan.members, key=lambda m: m.path))
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        *directives(endpoint, f"{mode}-{plan.name[:40]}"),
        "set -u",
        f"cd {q(source_root)} || exit {NO_SOURCE}",
        "work=$(mktemp -d) && trap 'rm -rf \"$work\"' EXIT",
        "cat > \"$work/expected\" <<'BEAMFLOW_MEMBERS_END'",
        expected,
        "BEAMFLOW_MEMBERS_END",
        'sort "$work/expected" > "$work/want"',
    ]
    if plan.kind == "htar":
        check = [
            f'htar -tf {q(target)} > "$work/listing" 2>/dev/null || exit {MISMATCH}',
            f'sed -nE {q(_LISTING_TO_SIZE_NAME)} "$work/listing" '
            f'| grep -vE {q(_CONSISTENCY_FILE)} | sort > "$work/got"',
            f'cmp -s "$work/want" "$work/got" || exit {MISMATCH}',
        ]
        store = [
            'cut -d\' \' -f2- "$work/expected" > "$work/members"',
            f'htar -cvf {q(target)} -Hcrc -L "$work/members"; status=$?',
            '[ "$status" -eq 0 ] || exit "$status"',
        ]
    else:
        member = plan.members[0]
        check = [
            f'hsi -q ls -l {q(target)} > "$work/listing" 2>&1 || exit {MISMATCH}',
            f'grep -qE {q(f" {member.size} ")} "$work/listing" || exit {MISMATCH}',
        ]
        store = [f"hsi -q cput {q(member.path)} : {q(target)} || exit $?"]
    exists = f"hsi -q ls {q(target)} > /dev/null 2>&1"
    if mode == "members":
        # The pruner's fresh check: these members (not necessarily all) are in the bundle with their sizes.
        subset = [*check[:-1], f'[ -z "$(comm -23 "$work/want" "$work/got")" ] || exit {MISMATCH}']
        lines += [f"{exists} || exit {ABSENT}", *(subset if plan.kind == "htar" else check), f"exit {VERIFIED}"]
    elif mode == "state":
        lines += [f"{exists} || exit {ABSENT}", *check, f"exit {VERIFIED}"]
    else:
        lines += [
            f"hsi -q mkdir -p {q(folder)} || exit {NO_FOLDER}",
            f"{exists} && exit {EXISTS}",
            *store,
            *check,
            f"exit {VERIFIED}",
        ]
    return "\n".join(lines) + "\n"


class HpssArchive:
    """``ArchiveBackend`` on NERSC HPSS. ``source_root`` is where the archived copies are at the site."""

    def __init__(self, endpoint: HpssEndpoint, name: str, source_root: str) -> None:
        self.endpoint = endpoint
        self.name = name
        self.source_root = endpoint.source_root or source_root
        # What the last `bundles` job read, by bundle path: `members` answers from it instead of a job per
        # bundle (None: htar could not list it). One backend lives for one archiver step.
        self._read: dict[str, list[MemberEntry] | None] = {}
        self._listed: set[str] = set()

    async def _run(self, script: str, what: str, read_back: str | None = None) -> tuple[int, str]:
        """Submit ``script``, follow it to the end, and return its exit status (a failed job included) and,
        when the job succeeded, the text of the site's file ``read_back`` ("" without one)."""
        from sfapi_client import SfApiError
        from sfapi_client.jobs import JobState

        timeout = int(self.endpoint.job_timeout.total_seconds())
        try:
            async with sfapi_compute(self.endpoint, self.endpoint.poll_interval) as machine:
                job = await machine.submit_job(script)
                try:
                    await job.complete(timeout=timeout)
                except TimeoutError:
                    await job.cancel()
                    raise ArchiveWriteFailed(
                        f"{what}: Slurm job {job.jobid} did not finish within {timeout} s; it was cancelled"
                    ) from None
                accounting = await machine.job(job.jobid)
                if job.state != JobState.COMPLETED and not accounting.exitcode:
                    raise ArchiveWriteFailed(f"{what}: Slurm job {job.jobid} ended {job.state} without an exit status")
                status = int(str(accounting.exitcode or "0:0").split(":")[0])
                text = ""
                if read_back is not None and status == VERIFIED:
                    text = await download_text(machine, read_back)
        except SfApiError as exc:
            raise ArchiveWriteFailed(f"{what}: NERSC's API said: {exc}; retrying") from None
        return status, text

    def _listing_file(self, what: str) -> tuple[str, list[str]]:
        """A fresh file name in ``listing_dir`` and the script lines that prepare it (and drop day-old ones)."""
        if self.endpoint.listing_dir is None:
            raise UnsupportedEndpoint(
                f"{what} on {self.name} needs a folder at the site for the job's listing: set `listing_dir` on "
                f"the {self.name} endpoint (e.g. a folder on $PSCRATCH)"
            )
        folder = self.endpoint.listing_dir.rstrip("/")
        path = f"{folder}/{LISTING_PREFIX}{uuid.uuid4().hex}.txt"
        q = shlex.quote
        return path, [
            f"mkdir -p {q(folder)} || exit {NO_SOURCE}",
            f"find {q(folder)} -maxdepth 1 -name {q(LISTING_PREFIX + '*')} -mmin +1440 -delete 2>/dev/null",
            f"out={q(path)}",
        ]

    async def state(self, plan: BundlePlan) -> BundleState:
        if plan.directory in self._listed and plan.path not in self._read:
            # Listed moments ago in this step and not there: no job needed. Should another writer take the
            # name meanwhile, the write job refuses to overwrite it (BundleExists).
            return BundleState(state="absent")
        status, _ = await self._run(render(plan, self.endpoint, self.source_root, "state"), f"checking {plan.path}")
        if status == VERIFIED:
            return BundleState(state="verified", members=[MemberEntry(name=m.path, size=m.size) for m in plan.members])
        if status == ABSENT:
            return BundleState(state="absent")
        if status == MISMATCH:
            return BundleState(
                state="unverified", reason=f"htar's listing of {plan.path} does not match the planned members"
            )
        raise ArchiveWriteFailed(f"checking {plan.path} on {self.name}: the job exited {status}; retrying")

    async def check_members(self, bundle_path: str, files: list[tuple[str, int]]) -> list[str]:
        """Whether the bundle lists ``files`` (name, size) now; the problems, none when they are all there."""
        directory, name = bundle_path.rsplit("/", 1)
        plan = BundlePlan.model_validate(
            {
                "beamline": "-",
                "proposal": "-",
                "cycle": {"year": 2000, "number": 1},
                "directory": directory,
                "name": name,
                "kind": "htar" if name.endswith(".tar") else "hsi",
                "members": [{"path": p, "size": size, "mtime": 0.0, "scan_id": "-"} for p, size in files],
            }
        )
        status, _ = await self._run(render(plan, self.endpoint, self.source_root, "members"), f"checking {bundle_path}")
        if status == VERIFIED:
            return []
        if status == ABSENT:
            return [f"bundle {bundle_path} is not on {self.name} any more"]
        if status == MISMATCH:
            return [f"htar's listing of {bundle_path} on {self.name} lacks a member of this copy, or its size differs"]
        return [f"checking {bundle_path} on {self.name}: the job exited {status}"]

    async def write(self, plan: BundlePlan, source_root: Path) -> BundleState:
        status, _ = await self._run(render(plan, self.endpoint, self.source_root, "write"), f"writing {plan.path}")
        if status == VERIFIED:
            return BundleState(state="verified", members=[MemberEntry(name=m.path, size=m.size) for m in plan.members])
        if status == EXISTS:
            raise BundleExists(f"{plan.path} already exists on {self.name}; it was not overwritten")
        if status == MISMATCH:
            raise BundleUnverified(
                f"{plan.path} was written on {self.name} but htar's listing does not hold every planned member "
                "with its size; it is left for inspection and nothing is announced"
            )
        if status == HTAR_SKIPPED:
            raise BundleUnverified(
                f"htar skipped members of {plan.path} (exit 70, although it printed HTAR SUCCESSFUL): names too "
                "long for its headers; the bundle is incomplete and nothing is announced"
            )
        if status == NO_SOURCE:
            raise ArchiveWriteFailed(f"the source folder {self.source_root} is not there at NERSC; retrying")
        raise ArchiveWriteFailed(f"writing {plan.path} on {self.name}: the job exited {status}; retrying")

    async def bundles(self, beamline: str, proposal: str) -> list[ExistingBundle]:
        """One job lists the proposal's folder and every bundle in it. Without ``listing_dir`` the archive
        cannot be read back here and this is empty: the archiver then knows the bundles from the ledger."""
        if self.endpoint.listing_dir is None:
            return []
        directory = f"{beamline}/raw/{proposal}"
        folder = f"{self.endpoint.root.rstrip('/')}/{directory}"
        out, prepare = self._listing_file(f"listing {directory}")
        q = shlex.quote
        entry = f'{q(folder)}/"$name"'
        script = "\n".join(
            [
                "#!/bin/bash",
                *directives(self.endpoint, f"list-{proposal[:40]}"),
                "set -u",
                *prepare,
                ': > "$out"',
                f"hsi -q ls {q(folder)} > /dev/null 2>&1 || exit 0",  # no folder: no bundles
                f'hsi -q ls -1 {q(folder)} 2>&1 | tail -n +2 > "$out.names" || exit {MISMATCH}',
                "while IFS= read -r name; do",
                '  case "$name" in',
                "    *.idx) ;;",
                f'    *.tar) printf "BUNDLE %s\\n" "$name" >> "$out"; htar -tf {entry} >> "$out" 2>/dev/null'
                ' || printf "UNREADABLE %s\\n" "$name" >> "$out" ;;',
                f'    *) printf "FILE %s\\n" "$name" >> "$out"; hsi -q ls -l {entry} >> "$out" 2>&1 ;;',
                "  esac",
                'done < "$out.names"',
                'rm -f "$out.names"',
                f"exit {VERIFIED}",
            ]
        )
        status, text = await self._run(script + "\n", f"listing {directory} on {self.name}", read_back=out)
        if status != VERIFIED:
            raise ArchiveWriteFailed(f"listing {directory} on {self.name}: the job exited {status}; retrying")
        self._read.update({f"{directory}/{name}": e for name, e in parse_folder_entries(text).items()})
        self._listed.add(directory)
        return parse_folder_listing(directory, text)

    async def members(self, bundle_path: str) -> list[MemberEntry]:
        if bundle_path in self._read:
            entries = self._read[bundle_path]
            if entries is None:
                raise BundleUnverified(f"htar cannot list {bundle_path} on {self.name} (its index may be missing)")
            return entries
        out, prepare = self._listing_file(f"listing {bundle_path}")
        target = f"{self.endpoint.root.rstrip('/')}/{bundle_path}"
        q = shlex.quote
        lister = (
            f'htar -tf {q(target)} > "$out" 2>&1'
            if bundle_path.endswith(".tar")
            else (f'hsi -q ls -l {q(target)} > "$out" 2>&1')
        )
        script = "\n".join(
            [
                "#!/bin/bash",
                *directives(self.endpoint, "list"),
                "set -u",
                *prepare,
                f"hsi -q ls {q(target)} > /dev/null 2>&1 || exit {ABSENT}",
                f"{lister} || exit {MISMATCH}",
                f"exit {VERIFIED}",
            ]
        )
        status, text = await self._run(script + "\n", f"listing {bundle_path} on {self.name}", read_back=out)
        if status == ABSENT:
            raise BundleNotFound(f"{bundle_path} is not on {self.name}")
        if status == MISMATCH:
            raise BundleUnverified(f"htar cannot list {bundle_path} on {self.name} (its index may be missing)")
        if status != VERIFIED:
            raise ArchiveWriteFailed(f"listing {bundle_path} on {self.name}: the job exited {status}; retrying")
        if bundle_path.endswith(".tar"):
            return parse_htar_listing(text)
        size = parse_hsi_size(text)
        if size is None:
            raise BundleUnverified(f"hsi's listing of {bundle_path} on {self.name} shows no file size")
        return [MemberEntry(name=bundle_path.rsplit("/", 1)[1], size=size)]

    async def restore(self, bundle_path: str, members: list[str] | None, destination: Path) -> list[Path]:
        """Extract the bundle (or only ``members``) into ``destination``, a folder the job sees at the site.

        The job extracts into a fresh folder beside the destination and moves each member into place only
        if nothing different is there already, so a restore never overwrites a file.
        """
        if members is None:
            members = [entry.name for entry in await self.members(bundle_path)]
        for name in members:
            check_relative(name)
        q = shlex.quote
        target = f"{self.endpoint.root.rstrip('/')}/{bundle_path}"
        if bundle_path.endswith(".tar"):
            extract = f'htar -xvf {q(target)} -L "$list" > /dev/null; status=$?; [ "$status" -eq 0 ] || exit "$status"'
        elif len(members) == 1:  # a large file stored alone: fetched under the member's own path
            extract = (
                f'mkdir -p "$(dirname {q(members[0])})" && hsi -q get {q(members[0])} : {q(target)} > /dev/null 2>&1'
                f" || exit {MISMATCH}"
            )
        else:
            raise MemberNotInBundle(f"{bundle_path} is a single file stored with hsi; restore one member of it")
        script = "\n".join(
            [
                "#!/bin/bash",
                *directives(self.endpoint, "restore"),
                "set -u",
                f"mkdir -p {q(str(destination))} || exit {NO_SOURCE}",
                f"work=$(mktemp -d -p {q(str(destination))} .beamflow-restore.XXXXXX) || exit {NO_SOURCE}",
                "list=$(mktemp) || exit 1",
                'trap \'rm -rf "$work" "$list"\' EXIT',
                'cd "$work" || exit 1',
                "cat > \"$list\" <<'BEAMFLOW_MEMBERS_END'",
                "\n".join(members),
                "BEAMFLOW_MEMBERS_END",
                extract,
                "while IFS= read -r name; do",
                f'  [ -f "$name" ] || exit {MISMATCH}',
                f'  final={q(str(destination))}/"$name"',
                '  if [ -e "$final" ]; then cmp -s "$name" "$final" || exit ' + str(EXISTS) + "; continue; fi",
                '  mkdir -p "$(dirname "$final")" && mv "$name" "$final" || exit 1',
                'done < "$list"',
                f"exit {VERIFIED}",
            ]
        )
        status, _ = await self._run(script + "\n", f"restoring from {bundle_path}")
        if status == EXISTS:
            raise RestoreConflict(
                f"a different file is already where a member of {bundle_path} would go; nothing moved"
            )
        if status == MISMATCH:
            raise MemberNotInBundle(f"{bundle_path} on {self.name} does not hold every member asked for")
        if status != VERIFIED:
            raise ArchiveWriteFailed(f"restoring from {bundle_path}: the job exited {status}; retry")
        return [destination / name for name in members]


def parse_folder_entries(text: str) -> dict[str, list[MemberEntry] | None]:
    """What a ``bundles`` job read, by object name: "BUNDLE name" + htar's listing, "FILE name" + hsi's long
    listing, or "UNREADABLE name" (an htar bundle htar cannot list: None, its name is taken, its members unknown).
    """
    found: dict[str, list[MemberEntry] | None] = {}
    name: str | None = None
    unreadable = False
    lines: list[str] = []

    def close() -> None:
        if name is None:
            return
        if unreadable:
            found[name] = None
        elif name.endswith(".tar"):
            found[name] = parse_htar_listing("\n".join(lines))
        else:
            size = parse_hsi_size("\n".join(lines))
            found[name] = None if size is None else [MemberEntry(name=name, size=size)]

    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("BUNDLE", "FILE", "UNREADABLE") and rest and "/" not in rest:
            if not (word == "UNREADABLE" and rest == name):
                close()
                lines = []
            name, unreadable = rest, word == "UNREADABLE"
        else:
            lines.append(line)
    close()
    return found


def parse_folder_listing(directory: str, text: str) -> list[ExistingBundle]:
    """The bundles in a ``bundles`` job's output. A file stored alone lists without its source path, so its
    members are left for the ledger to fill in; an unreadable bundle has none."""
    bundles = []
    for name, entries in sorted(parse_folder_entries(text).items()):
        kind: Literal["htar", "hsi"] = "htar" if name.endswith(".tar") else "hsi"
        members = [e.name for e in entries or []] if kind == "htar" else []
        bundles.append(ExistingBundle(directory=directory, name=name, kind=kind, members=members))
    return bundles
