"""``beamflow archive PROPOSAL``, ``archive ls`` and ``restore`` as an operator runs them.

The services run in this process against a real nats-server; the commands are separate processes.
"""

from __future__ import annotations

import os
from pathlib import Path

from beamflow.archiver.service import build as build_archiver
from beamflow.common.events import ScanArchived
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, harness, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from tests.e2e.test_retention_cli import beamflow
from tests.integration.test_archiver import PROPOSAL, archive_config
from tests.integration.test_mover import announce, write


async def test_archive_a_proposal_list_its_bundle_and_restore_a_scan(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = archive_config(tmp_path, "on_demand")
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    common = ("--nats", nats_server.url, "-c", str(config_file), "-b", "bl832")
    originals = {i: write(tmp_path / f"source/{PROPOSAL}/2026/tomo_{i}.h5", os.urandom(10_000 + i)) for i in range(2)}
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scans = [announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo_{i}.h5"]) for i in range(2)]
        for scan in scans:
            await bus.publish(scan)
        for scan in scans:
            await wait_for_record(bus.js, scan.scan_id, lambda r: "data" in r.copies)
        before = await beamflow("archive", "ls", PROPOSAL, *common)
        asked = await beamflow("archive", PROPOSAL, *common)
        await events.wait_for(lambda c: len(c.of(ScanArchived)) == 2, timeout=30)
        for scan in scans:
            await wait_for_record(bus.js, scan.scan_id, lambda r: "tape" in r.copies)
        listing = await beamflow("archive", "ls", PROPOSAL, *common)
        [bundle] = {e.bundle for e in events.of(ScanArchived)}
        members = await beamflow("archive", "ls", PROPOSAL, "--bundle", bundle.rsplit("/", 1)[1], *common)
        (tmp_path / "data" / PROPOSAL / "2026/tomo_0.h5").unlink()  # lost at the destination
        restored = await beamflow(
            "restore", scans[0].scan_id, "--to", "data", "--nats", nats_server.url, "-c", str(config_file)
        )
    assert "0 bundle(s); 2 verified scan(s) not archived" in before.stdout, before.stdout + before.stderr
    assert asked.returncode == 0 and "requested" in asked.stdout, asked.stderr
    assert listing.returncode == 0 and "1 bundle(s); 0 verified scan(s) not archived" in listing.stdout
    assert f"{PROPOSAL}_2026-" in listing.stdout and "yes" in listing.stdout, listing.stdout
    assert members.returncode == 0 and "2 member(s)" in members.stdout, members.stdout + members.stderr
    assert all(f"tomo_{i}.h5" in members.stdout for i in range(2)), members.stdout
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert (tmp_path / "data" / PROPOSAL / "2026/tomo_0.h5").read_bytes() == originals[0].read_bytes()
    assert "1 file(s) restored into data" in restored.stdout


async def test_archive_ls_shows_a_bundle_the_ledger_records_but_the_archive_lost(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = archive_config(tmp_path, "per_scan")
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    common = ("--nats", nats_server.url, "-c", str(config_file), "-b", "bl832")
    write(tmp_path / f"source/{PROPOSAL}/2026/tomo.h5", os.urandom(1000))
    services = (build_mover(config), build_ledger(config), build_archiver(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", [f"{PROPOSAL}/2026/tomo.h5"])
        await bus.publish(scan)
        await wait_for_record(bus.js, scan.scan_id, lambda r: "tape" in r.copies)
        [archived] = events.of(ScanArchived)
        (tmp_path / "tape" / archived.bundle).unlink()
        listing = await beamflow("archive", "ls", PROPOSAL, *common)
        gone = await beamflow("archive", "ls", PROPOSAL, "--bundle", archived.bundle, *common)
    assert listing.returncode == 0 and "MISSING" in listing.stdout, listing.stdout + listing.stderr
    assert gone.returncode == 1 and "no bundle" in gone.stderr, gone.stdout + gone.stderr
