"""The local tar archive on real files: what it writes is a tar GNU tar reads back byte for byte, it never
overwrites or publishes anything unverified, and it notices a bundle damaged after the fact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from beamflow.common.archive_backend import (
    ArchiveBackend,
    ArchiveFull,
    BundleExists,
    BundleUnverified,
    InvalidPlan,
    MemberChanged,
    MemberNotInBundle,
    RestoreConflict,
)
from beamflow.common.archive_model import BundlePlan, Cycle, MemberFile
from beamflow.common.archive_tar import LocalTarArchive
from beamflow.common.checksums import file_checksum
from beamflow.common.errors import PathOutsideRoot, SourceMissing, TransientError

PROPOSAL = "ALS-12345"
DIRECTORY = f"bl832/raw/{PROPOSAL}"
LONG = f"{PROPOSAL}/scan_0002/" + "a_very_long_detector_frame_name_" * 4 + "0001.tif"  # > 100 bytes: PAX
# Sizes that end mid-block, exactly on a block, span several 1 MiB chunks, and are empty.
FILES = {
    f"{PROPOSAL}/scan_0001/frame_0001.h5": 3 * 1024 * 1024 + 17,
    f"{PROPOSAL}/scan_0001/frame_0002.h5": 512,
    f"{PROPOSAL}/scan_0001/empty.txt": 0,
    f"{PROPOSAL}/scan_0002/ünïcode_ß.edf": 1000,
    LONG: 70_000,
}


def make_member(source: Path, rel: str, size: int, mtime: float = 1_700_000_000.25) -> MemberFile:
    path = source / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    os.utime(path, (mtime, mtime))
    return MemberFile(path=rel, size=size, mtime=mtime, scan_id=rel.split("/")[1], checksum=file_checksum(path)[0])


def plan_of(members: list[MemberFile], name: str = f"{PROPOSAL}_2026-1.tar", kind: str = "htar") -> BundlePlan:
    return BundlePlan.model_validate(
        {
            "beamline": "bl832",
            "proposal": PROPOSAL,
            "cycle": Cycle(year=2026, number=1),
            "directory": DIRECTORY,
            "name": name,
            "kind": kind,
            "members": members,
        }
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return tmp_path / "source"


@pytest.fixture
def archive(tmp_path: Path) -> LocalTarArchive:
    return LocalTarArchive(tmp_path / "archive")


@pytest.fixture
def plan(source: Path) -> BundlePlan:
    return plan_of([make_member(source, rel, size) for rel, size in FILES.items()])


def bundle_file(archive: LocalTarArchive, plan: BundlePlan) -> Path:
    return archive.root / plan.path


def folder_listing(archive: LocalTarArchive) -> list[str]:
    folder = archive.root / DIRECTORY
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def read_index(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.with_name(path.name + ".idx").read_text().splitlines()]


def gnu_tar(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["tar", *args], capture_output=True, check=True)


def writable(path: Path) -> Path:
    path.chmod(0o644)  # bundles are published read-only
    return path


def test_the_local_archive_implements_the_backend_interface(archive: LocalTarArchive) -> None:
    backend: ArchiveBackend = archive
    assert backend is archive


async def test_write_verifies_and_gnu_tar_reads_it_back_byte_identical(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    written = await archive.write(plan, source)

    assert written.state == "verified"
    assert [(m.name, m.size) for m in written.members] == list(FILES.items())
    assert await archive.state(plan) == written
    assert (await archive.state(plan, deep=True)).state == "verified"
    bundle = bundle_file(archive, plan)
    assert folder_listing(archive) == [plan.name, plan.name + ".idx"]  # no temporary left behind
    assert bundle.stat().st_mode & 0o777 == 0o444

    listed = gnu_tar("--quoting-style=literal", "-tf", str(bundle)).stdout.decode("utf-8").splitlines()
    assert listed == list(FILES)
    verbose = gnu_tar("--quoting-style=literal", "-tvf", str(bundle)).stdout.decode("utf-8").splitlines()
    assert [int(line.split()[2]) for line in verbose] == list(FILES.values())
    out = tmp_path / "gnu"
    out.mkdir()
    gnu_tar("-xf", str(bundle), "-C", str(out))
    for rel in FILES:
        assert (out / rel).read_bytes() == (source / rel).read_bytes(), rel
        assert (out / rel).stat().st_mtime == int((source / rel).stat().st_mtime)
    gnu_tar("--compare", "--ignore-failed-read", "-f", str(bundle), "-C", str(out))


async def test_the_index_records_the_checksums_of_the_sources(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)

    header, *records = read_index(bundle_file(archive, plan))
    assert header["kind"] == "htar" and header["algorithm"] == "xxh3-128" and header["members"] == len(FILES)
    assert header["size"] == bundle_file(archive, plan).stat().st_size
    assert [r["name"] for r in records] == list(FILES)
    for record in records:
        path = source / str(record["name"])
        assert record["checksum"] == file_checksum(path)[0]
        assert record["source_checksum"] == record["checksum"]
        assert record["size"] == path.stat().st_size
        assert record["mtime"] == path.stat().st_mtime
    with tarfile.open(bundle_file(archive, plan)) as tar:  # offsets point at each member's data
        assert [(i.name, i.offset_data) for i in tar] == [(r["name"], r["offset"]) for r in records]


async def test_an_existing_bundle_is_never_rewritten(source: Path, archive: LocalTarArchive, plan: BundlePlan) -> None:
    await archive.write(plan, source)
    bundle = bundle_file(archive, plan)
    index = bundle.with_name(bundle.name + ".idx")
    before = [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (bundle, index)]

    with pytest.raises(BundleExists, match="immutable"):
        await archive.write(plan, source)
    other = plan_of([make_member(source, f"{PROPOSAL}/scan_0009/new.h5", 10)])
    with pytest.raises(BundleExists):
        await archive.write(other, source)

    assert [(p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in (bundle, index)] == before
    assert folder_listing(archive) == [plan.name, plan.name + ".idx"]


async def test_a_truncated_bundle_is_unverified_naming_the_member(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    bundle = writable(bundle_file(archive, plan))
    first = read_index(bundle)[1]
    with bundle.open("r+b") as handle:
        handle.truncate(int(str(first["offset"])) + 1000)  # inside the first member's data

    state = await archive.state(plan)

    assert state.state == "unverified"
    assert state.reason is not None and f"{PROPOSAL}/scan_0001/frame_0001.h5" in state.reason
    assert "truncated" in state.reason


async def test_a_truncated_end_of_archive_is_unverified(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    bundle = writable(bundle_file(archive, plan))
    last = read_index(bundle)[-1]
    with bundle.open("r+b") as handle:
        end = int(str(last["offset"])) + int(str(last["size"]))
        handle.truncate(end + -end % 512)  # every member whole, no end-of-archive marker
    assert (await archive.state(plan)).reason == (
        f"the end-of-archive marker is missing after member {LONG} (the file is truncated at byte {end + -end % 512}); "
        f"the file has {end + -end % 512} bytes, its index says {read_index(bundle)[0]['size']}"
    )
    with bundle.open("r+b") as handle:
        handle.truncate(end)  # the last member's padding is cut too

    state = await archive.state(plan)

    assert state.state == "unverified"
    assert state.reason is not None and f"inside member {LONG} or its padding" in state.reason
    assert "end-of-archive marker is missing" in state.reason


async def test_a_corrupt_header_is_unverified_naming_the_member(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    bundle = writable(bundle_file(archive, plan))
    second = read_index(bundle)[2]
    header_at = int(str(second["offset"])) - 512
    with bundle.open("r+b") as handle:
        handle.seek(header_at)
        handle.write(b"X")  # the header checksum no longer matches

    state = await archive.state(plan)

    assert state.state == "unverified"
    assert state.reason is not None
    assert f"{PROPOSAL}/scan_0001/frame_0002.h5" in state.reason
    assert f"tar header at byte {header_at}" in state.reason


async def test_corrupt_member_bytes_are_found_by_a_deep_state_and_refused_by_restore(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    bundle = writable(bundle_file(archive, plan))
    record = read_index(bundle)[4]  # the non-ASCII member
    with bundle.open("r+b") as handle:
        handle.seek(int(str(record["offset"])) + 10)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))

    # The listing and index still agree with the plan: only re-reading the bytes shows the damage.
    assert (await archive.state(plan)).state == "verified"
    deep = await archive.state(plan, deep=True)
    assert deep.state == "unverified"
    assert deep.reason is not None and str(record["name"]) in deep.reason and "corrupt" in deep.reason
    destination = tmp_path / "restored"
    with pytest.raises(BundleUnverified, match="corrupt"):
        await archive.restore(plan.path, [str(record["name"])], destination)
    assert not [p for p in destination.rglob("*") if p.is_file()]


async def test_a_plan_whose_checksums_differ_from_the_index_is_unverified(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    changed = plan.members[1].model_copy(update={"checksum": "0" * 32})
    other = plan.model_copy(update={"members": [plan.members[0], changed, *plan.members[2:]]})

    state = await archive.state(other)

    assert state.state == "unverified"
    assert state.reason is not None and changed.path in state.reason


async def test_a_source_changed_since_the_copy_fails_the_write_and_leaves_nothing(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    third = source / plan.members[3].path  # same size, other bytes: only the checksum tells
    third.write_bytes(os.urandom(plan.members[3].size))

    with pytest.raises(MemberChanged, match=plan.members[3].path):
        await archive.write(plan, source)

    assert folder_listing(archive) == []
    assert (await archive.state(plan)).state == "absent"


async def test_a_source_of_another_size_fails_before_writing(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    (source / plan.members[0].path).write_bytes(b"shorter")

    with pytest.raises(MemberChanged, match="changed since it was copied"):
        await archive.write(plan, source)
    assert folder_listing(archive) == []


async def test_a_missing_source_fails_and_leaves_nothing(
    source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    (source / plan.members[2].path).unlink()

    with pytest.raises(SourceMissing):
        await archive.write(plan, source)
    assert folder_listing(archive) == []


async def test_restore_the_whole_bundle_and_again(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    destination = tmp_path / "restored"

    restored = await archive.restore(plan.path, None, destination)

    assert restored == [destination / rel for rel in FILES]
    for rel in FILES:
        assert (destination / rel).read_bytes() == (source / rel).read_bytes()
        assert (destination / rel).stat().st_mtime == pytest.approx((source / rel).stat().st_mtime, abs=1e-6)
    # Again: the same files are already there, nothing is written or refused.
    inode = (destination / LONG).stat().st_ino
    assert await archive.restore(plan.path, None, destination) == restored
    assert (destination / LONG).stat().st_ino == inode


async def test_restore_selected_members(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    destination = tmp_path / "restored"
    wanted = [LONG, f"{PROPOSAL}/scan_0001/frame_0002.h5"]

    restored = await archive.restore(plan.path, wanted, destination)

    assert restored == [destination / rel for rel in wanted]
    assert sorted(p for p in destination.rglob("*") if p.is_file()) == sorted(restored)
    assert all((destination / rel).read_bytes() == (source / rel).read_bytes() for rel in wanted)
    with pytest.raises(MemberNotInBundle, match=r"not_there\.h5"):
        await archive.restore(plan.path, [f"{PROPOSAL}/not_there.h5"], destination)


async def test_restore_never_overwrites_a_different_file(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    destination = tmp_path / "restored"
    (destination / LONG).parent.mkdir(parents=True)
    (destination / LONG).write_bytes(b"someone else's work")

    with pytest.raises(RestoreConflict, match="Move them aside"):
        await archive.restore(plan.path, None, destination)

    assert (destination / LONG).read_bytes() == b"someone else's work"
    assert [p for p in destination.rglob("*") if p.is_file()] == [destination / LONG]


async def test_restore_refuses_paths_leaving_the_destination(
    tmp_path: Path, source: Path, archive: LocalTarArchive, plan: BundlePlan
) -> None:
    await archive.write(plan, source)
    destination = tmp_path / "restored"
    with pytest.raises(PathOutsideRoot):
        await archive.restore(plan.path, [f"../{plan.members[0].path}"], destination)

    # A tar made elsewhere with a member climbing out of the folder it is extracted into.
    evil = archive.root / DIRECTORY / "evil.tar"
    payload = source / "payload.txt"
    payload.write_bytes(b"outside")
    with tarfile.open(evil, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(payload, arcname="ok.txt")
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(PathOutsideRoot):
        await archive.restore(f"{DIRECTORY}/evil.tar", None, destination)
    assert not (tmp_path / "escaped.txt").exists()
    assert not [p for p in destination.rglob("*") if p.is_file()]


async def test_bundles_lists_what_exists(source: Path, archive: LocalTarArchive, plan: BundlePlan) -> None:
    assert await archive.bundles("bl832", PROPOSAL) == []
    await archive.write(plan, source)
    part2 = plan_of([make_member(source, f"{PROPOSAL}/scan_0003/late.h5", 100)], name=f"{PROPOSAL}_2026-1_part2.tar")
    await archive.write(part2, source)
    big = plan_of([make_member(source, f"{PROPOSAL}/scan_0004/big.h5", 5000)], name="big.h5", kind="hsi")
    await archive.write(big, source)
    folder = archive.root / DIRECTORY
    (folder / f".{PROPOSAL}_2026-1_part3.tar.beamflow.part").write_bytes(b"a crashed write")
    (folder / f"{PROPOSAL}_2026-1_part4.tar.idx").write_text("an index without its tar")

    found = await archive.bundles("bl832", PROPOSAL)

    assert [(b.name, b.kind, b.directory) for b in found] == [
        (f"{PROPOSAL}_2026-1.tar", "htar", DIRECTORY),
        (f"{PROPOSAL}_2026-1_part2.tar", "htar", DIRECTORY),
        ("big.h5", "hsi", DIRECTORY),
    ]
    assert found[0].members == list(FILES)
    assert found[1].members == [f"{PROPOSAL}/scan_0003/late.h5"]
    assert found[2].members == [f"{PROPOSAL}/scan_0004/big.h5"]
    assert await archive.bundles("bl832", "ALS-99999") == []
    with pytest.raises(PathOutsideRoot):
        await archive.bundles("bl832", "..")


async def test_hsi_round_trip(tmp_path: Path, source: Path, archive: LocalTarArchive) -> None:
    member = make_member(source, f"{PROPOSAL}/scan_0005/huge_volume.h5", 2 * 1024 * 1024 + 5)
    plan = plan_of([member], name="huge_volume.h5", kind="hsi")
    assert (await archive.state(plan)).state == "absent"

    written = await archive.write(plan, source)

    assert written.state == "verified"
    stored = bundle_file(archive, plan)
    assert stored.read_bytes() == (source / member.path).read_bytes()
    header, record = read_index(stored)
    assert header["kind"] == "hsi" and record["name"] == member.path and record["checksum"] == member.checksum
    assert (await archive.state(plan, deep=True)).state == "verified"
    assert [(m.name, m.size) for m in await archive.members(plan.path)] == [(member.path, member.size)]
    with pytest.raises(BundleExists):
        await archive.write(plan, source)
    destination = tmp_path / "restored"
    assert await archive.restore(plan.path, None, destination) == [destination / member.path]
    assert (destination / member.path).read_bytes() == (source / member.path).read_bytes()
    writable(stored).write_bytes(b"shrunk")
    state = await archive.state(plan)
    assert state.state == "unverified" and state.reason is not None and member.path in state.reason


async def test_plans_the_archive_cannot_store_are_refused(source: Path, archive: LocalTarArchive) -> None:
    a = make_member(source, f"{PROPOSAL}/scan_0006/a.h5", 10)
    b = make_member(source, f"{PROPOSAL}/scan_0006/b.h5", 10)
    with pytest.raises(InvalidPlan, match="hsi stores one file"):
        await archive.write(plan_of([a, b], name="a.h5", kind="hsi"), source)
    with pytest.raises(InvalidPlan, match="twice"):
        await archive.write(plan_of([a, a]), source)
    with pytest.raises(InvalidPlan):
        await archive.write(plan_of([a], name=".hidden.tar"), source)
    with pytest.raises(PathOutsideRoot):
        await archive.write(plan_of([a.model_copy(update={"path": "../outside.h5"})]), source)
    assert folder_listing(archive) == []


_FULL_DISK = textwrap.dedent(
    """
    import asyncio, json, os, subprocess, sys
    from pathlib import Path
    from beamflow.common.archive_backend import ArchiveFull
    from beamflow.common.archive_tar import LocalTarArchive
    from beamflow.common.archive_model import BundlePlan, MemberFile
    from beamflow.common.checksums import file_checksum

    source, root = Path(sys.argv[1]), Path(sys.argv[2])
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(root)], check=True)
    folder = root / "bl832/raw/P"
    folder.mkdir(parents=True)
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize

    def plan(name, size):
        path = source / "P" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        member = MemberFile(path=f"P/{name}", size=size, mtime=0, scan_id="s", checksum=file_checksum(path)[0])
        return BundlePlan(beamline="bl832", proposal="P", cycle={"year": 2026, "number": 1},
                          directory="bl832/raw/P", name=name + ".tar", kind="htar", members=[member])

    outcome = {"free": free}
    # "too_big" does not fit at all; "no_room_for_index": the tar fills the disk exactly (one 512-byte header,
    # the data, the end marker, padded to a 10 KiB record), so the index that follows it has no room.
    for label, size in (("too_big", free + 1), ("no_room_for_index", free - 2048)):
        try:
            asyncio.run(LocalTarArchive(root).write(plan(label, size), source))
            outcome[label] = ["written", ""]
        except ArchiveFull as exc:
            outcome[label] = [type(exc).__name__, str(exc)]
        outcome[label + "_left"] = sorted(os.listdir(folder))
    print(json.dumps(outcome))
    """
)


def test_a_full_archive_disk_fails_cleanly_and_is_transient(tmp_path: Path, source: Path) -> None:
    """On a real 5 MiB tmpfs, in a private mount namespace that vanishes with the process."""
    assert issubclass(ArchiveFull, TransientError)  # a disk that fills up may be freed: retried, not dropped
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "tmpfs", str(tmp_path)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.decode().strip()}")
    source.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", _FULL_DISK, str(source), str(tmp_path / "small")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    if outcome["free"] % 10240:
        pytest.skip(f"this tmpfs reports {outcome['free']} bytes free, not a whole number of tar records")

    kind, message = outcome["too_big"]
    assert kind == "ArchiveFull" and "needs" in message and "nothing was written" in message
    assert outcome["too_big_left"] == []
    kind, message = outcome["no_room_for_index"]
    assert kind == "ArchiveFull" and "No space left on device" in message
    assert outcome["no_room_for_index_left"] == []  # neither the tar nor a temporary file is left
