"""The archiver's NERSC HPSS backend end to end: the unmodified sfapi-client submits its htar/hsi scripts to
the SFAPI stand-in, which runs them under a real Slurm with the htar/hsi stand-ins on a folder playing HPSS.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from beamflow.archiver.service import build as build_archiver
from beamflow.common.archive_backend import BundleExists, BundleNotFound, BundleUnverified, RestoreConflict
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.archive_hpss import HpssArchive
from beamflow.common.archive_model import BundlePlan, Cycle, MemberFile
from beamflow.common.checksums import file_checksum
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import HpssEndpoint, RetentionRule
from beamflow.common.errors import UnsupportedEndpoint
from beamflow.common.events import ScanArchived
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.testing import harness, test_config, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from beamflow.sfapi_local.testing import LocalNersc
from tests.integration.test_mover import announce, write

pytestmark = pytest.mark.timeout(180)
PROPOSAL = "ALS-11123"
ARCHIVE_ROOT = "/home/a/alsdev/beamflow"


@pytest.fixture
def hpss_config(tmp_path: Path, nersc: LocalNersc, monkeypatch: pytest.MonkeyPatch) -> BeamflowConfig:
    monkeypatch.setenv("TEST_SFAPI_CLIENT_ID", nersc.credentials.client_id)
    monkeypatch.setenv("TEST_SFAPI_KEY", nersc.credentials.secret)
    base = test_config(tmp_path, max_deliver=2, backoff=[timedelta(milliseconds=200)], ack_wait=timedelta(seconds=60))
    hpss = HpssEndpoint(
        root=f"{ARCHIVE_ROOT}/{tmp_path.name}",
        api_base_url=nersc.api_base_url,
        token_url=nersc.token_url,
        client_id=SecretRef(env="TEST_SFAPI_CLIENT_ID"),
        private_key=SecretRef(env="TEST_SFAPI_KEY"),
        listing_dir=str(nersc.scratch / tmp_path.name / "listings"),
        poll_interval=timedelta(seconds=1),
        job_timeout=timedelta(seconds=120),
        leaves_facility=True,
    )
    policy = ArchivePolicy(endpoint="hpss", source="data", when="per_scan")
    beamline = base.beamlines["bl832"].model_copy(update={"archive": policy})
    return base.model_copy(update={"endpoints": {**base.endpoints, "hpss": hpss}, "beamlines": {"bl832": beamline}})


def htar_listing(nersc: LocalNersc, bundle: str) -> list[str]:
    done = subprocess.run(["htar", "-tf", bundle], env=nersc.tool_env, capture_output=True, text=True, check=True)
    names = [line.rsplit("  ", 1)[1] for line in done.stdout.splitlines() if line.startswith("HTAR: -")]
    return [name for name in names if "HTAR_CF_CHK_" not in name]  # htar's own consistency file


async def test_a_scan_is_archived_to_hpss_by_a_slurm_job_and_verified_with_htar(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig, nats_server: EmbeddedNats
) -> None:
    write(tmp_path / f"source/{PROPOSAL}/2026/tomo 1.h5", os.urandom(100_000))  # a space: quoting matters
    services = (build_mover(hpss_config), build_ledger(hpss_config), build_archiver(hpss_config))
    async with harness(hpss_config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo 1.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.moved) == 1, timeout=30)
        moved_at = time.monotonic()
        await events.wait_for(lambda c: len(c.of(ScanArchived)) + len(c.failed) >= 1, timeout=120)
        seconds = time.monotonic() - moved_at
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "hpss" in r.copies)
    assert not events.failed, events.failed[0].reason
    [archived] = events.of(ScanArchived)
    bundle = f"{ARCHIVE_ROOT}/{tmp_path.name}/{archived.bundle}"
    assert htar_listing(nersc, bundle) == [f"{PROPOSAL}/2026/tomo 1.h5"]
    assert record.copies["hpss"].external_id == archived.bundle
    print(f"scan.moved -> scan.archived through two Slurm jobs: {seconds:.1f} s")


async def test_a_failing_job_fails_the_step_with_its_reason_and_nothing_is_announced(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig, nats_server: EmbeddedNats
) -> None:
    # A file where the bundle's folder must go: `hsi mkdir -p` fails inside the job.
    blocker = nersc.hpss_root / f"{ARCHIVE_ROOT.lstrip('/')}/{tmp_path.name}/bl832"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_bytes(b"in the way")
    write(tmp_path / f"source/{PROPOSAL}/2026/tomo_2.h5", os.urandom(1000))
    services = (build_mover(hpss_config), build_ledger(hpss_config), build_archiver(hpss_config))
    async with harness(hpss_config, nats_server.url, *services) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_2.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=120)
    [dead] = events.failed
    assert dead.service == "archiver" and "exited 11" in dead.reason, dead.reason
    assert not events.of(ScanArchived)


async def test_a_job_the_api_loses_fails_the_step_and_nothing_is_announced(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig, nats_server: EmbeddedNats
) -> None:
    # Slurm numbers jobs in order: the API forgets the next few, as the real one sometimes does.
    known = [int(job_id) for job_id in nersc.slurm.jobs()]
    upcoming = range(max(known, default=0) + 1, max(known, default=0) + 6)
    for job_id in upcoming:
        nersc.api.lose_job(job_id)
    write(tmp_path / f"source/{PROPOSAL}/2026/tomo_3.h5", os.urandom(1000))
    services = (build_mover(hpss_config), build_ledger(hpss_config), build_archiver(hpss_config))
    try:
        async with harness(hpss_config, nats_server.url, *services) as (bus, events):
            scan = announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_3.h5"])
            await bus.publish(scan)
            await events.wait_for(lambda c: len(c.failed) == 1, timeout=120)
            record = await wait_for_record(bus.js, scan.scan_id, lambda r: bool(r.failures))
    finally:
        for job_id in upcoming:
            nersc.api.find_job(job_id)
    [dead] = events.failed
    assert dead.service == "archiver" and "Job not found" in dead.reason, dead.reason
    assert not events.of(ScanArchived) and "hpss" not in record.copies


def plan_for(members: list[MemberFile], name: str = f"{PROPOSAL}_2026-2.tar") -> BundlePlan:
    return BundlePlan(
        beamline="bl832",
        proposal=PROPOSAL,
        cycle=Cycle(year=2026, number=2),
        directory=f"bl832/raw/{PROPOSAL}",
        name=name,
        kind="htar",
        members=members,
    )


def member(root: Path, rel: str, size: int = 2000) -> MemberFile:
    path = write(root / rel, os.urandom(size))
    return MemberFile(path=rel, size=size, mtime=path.stat().st_mtime, scan_id="s", checksum=file_checksum(path)[0])


async def test_htar_skipping_a_name_is_a_failure_even_though_it_says_successful(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig
) -> None:
    # Past the planner (which refuses such names) straight to the backend: htar exits 70 and prints SUCCESSFUL.
    root = tmp_path / "data"
    long_name = f"{PROPOSAL}/" + "x" * 120 + ".h5"
    plan = plan_for([member(root, f"{PROPOSAL}/ok.h5"), member(root, long_name)])
    archive = HpssArchive(hpss_config.endpoints["hpss"], "hpss", str(root))  # type: ignore[arg-type]
    with pytest.raises(BundleUnverified, match="exit 70"):
        await archive.write(plan, root)


async def test_a_bundle_whose_listing_lacks_a_member_does_not_verify(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig
) -> None:
    root = tmp_path / "data"
    first, second = member(root, f"{PROPOSAL}/a.h5"), member(root, f"{PROPOSAL}/b.h5")
    archive = HpssArchive(hpss_config.endpoints["hpss"], "hpss", str(root))  # type: ignore[arg-type]
    written = await archive.write(plan_for([first]), root)
    assert written.state == "verified"
    assert (await archive.state(plan_for([first]))).state == "verified"
    lacking = await archive.state(plan_for([first, second]))
    assert lacking.state == "unverified" and "does not match" in (lacking.reason or "")
    assert (await archive.state(plan_for([first], name="absent.tar"))).state == "absent"
    with pytest.raises(BundleExists):
        await archive.write(plan_for([first]), root)
    # Restore the member into another folder through a job; a conflicting file there is never overwritten.
    restored = await archive.restore(plan_for([first]).path, [first.path], tmp_path / "restored")
    assert [p.read_bytes() for p in restored] == [(root / first.path).read_bytes()]
    restored[0].write_bytes(b"something else")
    with pytest.raises(RestoreConflict):
        await archive.restore(plan_for([first]).path, [first.path], tmp_path / "restored")
    assert restored[0].read_bytes() == b"something else"


async def test_a_copy_held_for_the_archive_is_pruned_once_a_job_confirms_the_bundle(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig, nats_server: EmbeddedNats
) -> None:
    # data keeps its copies until HPSS holds them: the archive is the hold's check endpoint.
    rule = RetentionRule(keep_for=timedelta(seconds=2), check_endpoint="hpss")
    data = hpss_config.endpoints["data"].model_copy(update={"retention": rule})
    config = hpss_config.model_copy(update={"endpoints": {**hpss_config.endpoints, "data": data}})
    write(tmp_path / f"source/{PROPOSAL}/2026/tomo_5.h5", os.urandom(50_000))
    services = (build_mover(config), build_ledger(config), build_archiver(config), build_pruner(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_5.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.pruned) + len(c.failed) >= 1, timeout=120)
    assert not events.failed, events.failed[0].reason
    [pruned] = events.pruned
    assert (pruned.endpoint, pruned.check_endpoint) == ("data", "hpss")
    assert not (tmp_path / f"data/{PROPOSAL}/2026/tomo_5.h5").exists()
    assert (tmp_path / f"source/{PROPOSAL}/2026/tomo_5.h5").exists(), "only the held copy is pruned"


async def test_the_archive_lists_its_bundles_and_members_and_restores_a_whole_bundle(
    tmp_path: Path, nersc: LocalNersc, hpss_config: BeamflowConfig
) -> None:
    root = tmp_path / "data"
    first, second = member(root, f"{PROPOSAL}/a b.h5", 3000), member(root, f"{PROPOSAL}/sub/c.h5", 4000)
    big = member(root, f"{PROPOSAL}/big/frame.h5", 5000)
    archive = HpssArchive(hpss_config.endpoints["hpss"], "hpss", str(root))  # type: ignore[arg-type]
    assert await archive.bundles("bl832", PROPOSAL) == []  # no folder yet
    await archive.write(plan_for([first, second]), root)
    alone = plan_for([big], name="frame.h5").model_copy(update={"kind": "hsi"})
    await archive.write(alone, root)
    # A bundle someone else wrote into the folder, which the ledger never saw, is listed too.
    other = write(tmp_path / "elsewhere" / "x.h5", os.urandom(100))
    folder = f"{ARCHIVE_ROOT}/{tmp_path.name}/bl832/raw/{PROPOSAL}"
    await asyncio.to_thread(
        subprocess.run,
        ["htar", "-cf", f"{folder}/{PROPOSAL}_2026-2_part1.tar", "x.h5"],
        env=nersc.tool_env,
        cwd=other.parent,
        check=True,
        capture_output=True,
    )
    listed = await archive.bundles("bl832", PROPOSAL)
    assert [(b.name, b.kind, b.members) for b in listed] == [
        (f"{PROPOSAL}_2026-2.tar", "htar", [first.path, second.path]),
        (f"{PROPOSAL}_2026-2_part1.tar", "htar", ["x.h5"]),
        ("frame.h5", "hsi", []),  # stored alone: the listing has no source path, the ledger adds it
    ]
    entries = await archive.members(plan_for([first]).path)
    assert [(e.name, e.size) for e in entries] == [(first.path, 3000), (second.path, 4000)]
    assert [(e.name, e.size) for e in await archive.members(alone.path)] == [("frame.h5", 5000)]
    with pytest.raises(BundleNotFound):
        await archive.members(plan_for([first], name="absent.tar").path)
    restored = await archive.restore(plan_for([first]).path, None, tmp_path / "restored")
    assert sorted(p.relative_to(tmp_path / "restored").as_posix() for p in restored) == [first.path, second.path]
    assert all(p.read_bytes() == (root / p.relative_to(tmp_path / "restored")).read_bytes() for p in restored)
    [fetched] = await archive.restore(alone.path, [big.path], tmp_path / "restored")
    assert fetched.read_bytes() == (root / big.path).read_bytes()


async def test_without_a_listing_folder_listing_is_refused_with_what_to_set(
    tmp_path: Path, hpss_config: BeamflowConfig
) -> None:
    endpoint = hpss_config.endpoints["hpss"].model_copy(update={"listing_dir": None})
    archive = HpssArchive(endpoint, "hpss", str(tmp_path))  # type: ignore[arg-type]
    assert await archive.bundles("bl832", PROPOSAL) == []
    with pytest.raises(UnsupportedEndpoint, match="set `listing_dir`"):
        await archive.restore(f"bl832/raw/{PROPOSAL}/{PROPOSAL}_2026-2.tar", None, tmp_path / "restored")
