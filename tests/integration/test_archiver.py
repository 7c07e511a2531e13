"""The archiver with the local tar archive, on a real nats-server with the real mover and ledger.

Bundles are real tar files read back with GNU tar; the holds the archive makes possible are looked up on
the bus; what the ledger records is read from its bucket.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from datetime import timedelta
from pathlib import Path

from beamflow.archiver.service import build as build_archiver
from beamflow.common import holds
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.checksums import file_checksum
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import RetentionRule, TarArchiveEndpoint
from beamflow.common.events import ArchiveRequested, ScanArchived
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness, test_config, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from nats.js.errors import NotFoundError
from tests.integration.test_mover import announce, write

PROPOSAL = "ALS-11123"


def archive_config(tmp_path: Path, when: str, **delivery: object) -> BeamflowConfig:
    base = test_config(
        tmp_path, retention={"data": RetentionRule(keep_for=timedelta(days=7), check_endpoint="tape")}, **delivery
    )
    tape = TarArchiveEndpoint(root=tmp_path / "tape")
    tape.root.mkdir(parents=True, exist_ok=True)
    policy = ArchivePolicy(endpoint="tape", source="data", when=when)  # type: ignore[arg-type]
    beamline = base.beamlines["bl832"].model_copy(update={"archive": policy})
    return base.model_copy(update={"endpoints": {**base.endpoints, "tape": tape}, "beamlines": {"bl832": beamline}})


def tar_listing(bundle: Path) -> list[str]:
    done = subprocess.run(["tar", "-tf", str(bundle)], capture_output=True, text=True, check=True)
    return done.stdout.split()


async def test_per_scan_policy_archives_each_verified_copy_and_holds_the_copy_it_protects(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = archive_config(tmp_path, "per_scan")
    src = write(tmp_path / f"source/{PROPOSAL}/2026/tomo_1.h5", os.urandom(300_000))
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_1.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.of(ScanArchived)) == 1, timeout=30)
        # The hold is a separate event published after scan.archived: wait for the ledger to have folded both.
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "tape" in r.copies and "data" in r.holds)
        [archived] = events.of(ScanArchived)
        pending = await holds.pending(bus.js, holds.latest_hold(record, "data")[1])
    assert not events.failed, events.failed[0].reason
    assert archived.bundle.startswith(f"bl832/raw/{PROPOSAL}/{PROPOSAL}_") and archived.bundle.endswith(".tar")
    bundle = tmp_path / "tape" / archived.bundle
    assert tar_listing(bundle) == [f"{PROPOSAL}/2026/tomo_1.h5"]
    assert archived.files[0].checksum == file_checksum(src)[0]
    assert record.copies["tape"].external_id == archived.bundle
    assert pending is not None and pending.check_endpoint == "tape", "data is now held with the archive as check"


async def test_an_archive_request_bundles_a_proposals_scans_once(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = archive_config(tmp_path, "on_demand")
    for i in range(3):
        write(tmp_path / f"source/{PROPOSAL}/2026/tomo_{i}.h5", os.urandom(50_000 + i))
    write(tmp_path / "source/ALS-99999/2026/other.h5", os.urandom(1000))
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scans = [announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_{i}.h5"]) for i in range(3)]
        other = announce(tmp_path / "source", "bl832", ["ALS-99999/2026/other.h5"])
        for scan in [*scans, other]:
            await bus.publish(scan)
        for scan in [*scans, other]:
            await wait_for_record(bus.js, scan.scan_id, lambda r: "data" in r.copies)
        await bus.publish(ArchiveRequested(beamline="bl832", proposal=PROPOSAL))
        await events.wait_for(lambda c: len(c.of(ScanArchived)) == 3, timeout=30)
        for scan in scans:
            await wait_for_record(bus.js, scan.scan_id, lambda r: "tape" in r.copies)
        # Asked again: everything is archived already, so nothing new is written or announced.
        bundles_before = sorted(p.name for p in (tmp_path / "tape").rglob("*.tar"))
        await bus.publish(ArchiveRequested(beamline="bl832", proposal=PROPOSAL))
        await bus.publish(ArchiveRequested(beamline="bl832", proposal="ALS-99999"))
        await events.wait_for(lambda c: len(c.of(ScanArchived)) == 4, timeout=30)
    assert not events.failed, events.failed[0].reason
    archived = events.of(ScanArchived)
    assert {a.scan_id for a in archived} == {s.scan_id for s in [*scans, other]}
    mine = {a.bundle for a in archived if a.scan_id != other.scan_id}
    assert len(mine) == 1, "one proposal, one cycle: one bundle"
    assert sorted(tar_listing(tmp_path / "tape" / mine.pop())) == [f"{PROPOSAL}/2026/tomo_{i}.h5" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "tape").rglob("*.tar")) == sorted(
        [*bundles_before, *(p.name for p in (tmp_path / "tape/bl832/raw/ALS-99999").rglob("*.tar"))]
    )


async def test_an_existing_bundle_that_does_not_verify_is_reported_and_never_overwritten(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = archive_config(tmp_path, "per_scan", max_deliver=2)
    src = write(tmp_path / f"source/{PROPOSAL}/2026/tomo_9.h5", os.urandom(20_000))
    mtime = src.stat().st_mtime
    from beamflow.archiver.planning import bundle_name, cycle_of

    squatter = tmp_path / "tape/bl832/raw" / PROPOSAL / bundle_name(PROPOSAL, cycle_of(mtime), 1)
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"not a tar archive at all")
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_9.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=30)
    [dead] = events.failed
    assert dead.service == "archiver" and "does not verify" in dead.reason
    assert squatter.read_bytes() == b"not a tar archive at all"
    assert not events.of(ScanArchived)


async def test_end_of_cycle_policy_schedules_the_cycles_archive_on_the_server(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    # Scans of a cycle that has ended: the schedule the archiver places is already due, so the server fires
    # it at once and the archive runs; nothing in our processes keeps a timer.
    from datetime import datetime

    from beamflow.archiver.planning import FACILITY_ZONE

    config = archive_config(tmp_path, "end_of_cycle")
    last_year = datetime(2025, 3, 1, 12, tzinfo=FACILITY_ZONE).timestamp()
    for i in range(2):
        path = write(tmp_path / f"source/{PROPOSAL}/2025/tomo_{i}.h5", os.urandom(5000))
        os.utime(path, (last_year, last_year))
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        for i in range(2):
            await bus.publish(announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2025/tomo_{i}.h5"]))
        await events.wait_for(lambda c: len({a.scan_id for a in c.of(ScanArchived)}) == 2, timeout=30)
        info = await bus.js.stream_info("ARCHIVES")
        stored = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                stored.append(await bus.js.get_msg("ARCHIVES", seq))
    assert not events.failed, events.failed[0].reason
    assert {a.bundle for a in events.of(ScanArchived)} == {f"bl832/raw/{PROPOSAL}/{PROPOSAL}_2025-1.tar"}
    fired = [m for m in stored if m.subject == "archive.request.bl832"]
    requests = [ArchiveRequested.model_validate_json(m.data or b"") for m in fired]
    assert [(r.cycle, r.requested_by, r.proposal) for r in requests] == [("2025-1", "end of cycle", None)]
