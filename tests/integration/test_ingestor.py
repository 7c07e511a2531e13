"""The ingestor end to end: real nats-server, real mover and ledger, the local SciCat over HTTP, pyscicat.

Scans are written by the detector simulator (the files the demo writes), copied by the mover, and
catalogued by the ingestor; what SciCat holds is read back with pyscicat and compared with what the files
say, read independently (h5py, the header text) rather than through the extractors under test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from beamflow.common.catalog_config import BeamlineCatalog, CatalogConnection, CatalogDefaults
from beamflow.common.checksums import file_checksum
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import ScanMoved
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.simulate import write_scan_733, write_scan_832
from beamflow.common.testing import harness, running, test_config, wait_for_record, wait_until
from beamflow.ingestor.catalog import THUMBNAIL_CAPTION, scan_keyword
from beamflow.ingestor.service import build as build_ingestor
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.scicat_local import LocalSciCat
from pyscicat.client import ScicatClient
from tests.integration.test_mover import announce

PASSWORD_ENV = "BEAMFLOW_TEST_SCICAT_PASSWORD"


@pytest.fixture
def scicat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSciCat]:
    with LocalSciCat(tmp_path / "scicat" / "catalog.sqlite") as local:
        monkeypatch.setenv(PASSWORD_ENV, local.password)
        yield local


def catalog_config(
    tmp_path: Path, scicat: LocalSciCat, technique: str, suffixes: tuple[str, ...], **settings: Any
) -> BeamflowConfig:
    catalog = BeamlineCatalog(
        destination="data",
        technique=technique,
        creation_location="/ALS/test",
        defaults=CatalogDefaults(
            owner_group="beamline-staff",
            contact_email=settings.pop("contact_email", "staff@example.org"),
            principal_investigator="Staff",
        ),
    )
    connection = CatalogConnection(url=scicat.url, username=scicat.username, password=SecretRef(env=PASSWORD_ENV))
    return test_config(tmp_path, suffixes=suffixes, catalog=catalog, catalog_connection=connection, **settings)


def client(scicat: LocalSciCat) -> ScicatClient:
    return ScicatClient(scicat.url, username=scicat.username, password=scicat.password)


def datasets_of(scicat: LocalSciCat, scan_id: str) -> list[dict[str, Any]]:
    return list(client(scicat).datasets_get_many({"keywords": scan_keyword(scan_id)}) or [])


def text(value: Any) -> str:
    raw = value[()] if isinstance(value, h5py.Dataset) else value
    raw = raw.reshape(-1)[0] if isinstance(raw, np.ndarray) else raw
    return (raw.decode() if isinstance(raw, bytes) else str(raw)).strip(" '\",")


async def test_a_tomography_scan_becomes_one_dataset_with_every_file_and_a_thumbnail(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",))
    h5 = write_scan_832(tmp_path / "source", "2026/tomo_0001", np.random.default_rng(3))
    with h5py.File(h5) as f:
        pi = text(f["/measurement/sample/experiment/pi"])
        proposal = text(f["/measurement/sample/experiment/proposal"])
    digest, size = file_checksum(h5)
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["2026/tomo_0001.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.ingested) == 1, timeout=30)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "catalog:raw" in r.external_ids)
        # A redelivered or replayed scan.moved (a new message, as `beamflow dlq replay` sends) updates it.
        moved = events.moved[0]
        await bus.js.publish(moved.subject(), moved.to_json(), headers={"Nats-Msg-Id": "replayed-moved-1"})
        await events.wait_for(lambda c: len(c.ingested) == 2, timeout=30)
    assert not events.failed, events.failed[0].reason
    first, again = events.ingested
    assert (first.action, again.action) == ("created", "updated") and first.pid == again.pid
    assert record.external_ids["catalog:raw"] == first.pid

    [dataset] = datasets_of(scicat, scan.scan_id)
    assert dataset["pid"] == first.pid and "/" in dataset["pid"]
    assert (dataset["principalInvestigator"], dataset["proposalId"]) == (pi, proposal)
    assert dataset["ownerGroup"] == proposal
    assert dataset["sourceFolder"] == str(config.filesystem_root("data") / "2026")
    assert dataset["scientificMetadata"]["beamflow"]["scan_id"] == scan.scan_id
    sc = client(scicat)
    [block] = sc.datasets_origdatablocks_get_one(first.pid)
    assert [(f["path"], f["size"], f["chk"]) for f in block["dataFileList"]] == [("tomo_0001.h5", size, digest)]
    assert block["chkAlg"] == "xxh3-128" and all(f.get("time") for f in block["dataFileList"])
    attachments = sc._call_endpoint(cmd="get", endpoint=f"Datasets/{first.pid.replace('/', '%2F')}/attachments")
    assert [a["caption"] for a in attachments] == [THUMBNAIL_CAPTION]
    assert attachments[0]["thumbnail"].startswith("data:image/png;base64,")


async def test_a_saxs_scan_takes_its_owner_and_proposal_from_the_header_and_lists_both_files(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "saxs-waxs-733", (".txt", ".edf"))
    txt, edf = write_scan_733(tmp_path / "source", "2026/sample_0007", np.random.default_rng(11))
    pairs = (
        line.split(":", 1) if ":" in line else line.split("=", 1)
        for line in txt.read_text().splitlines()
        if line.startswith(("PI", "Proposal"))
    )
    header = {key.strip(): value.strip() for key, value in pairs}
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl733", ["2026/sample_0007.txt", "2026/sample_0007.edf"])
        await bus.publish(scan.model_copy(update={"beamline": "bl832"}))
        await events.wait_for(lambda c: len(c.ingested) == 1, timeout=30)
        moved = events.moved[0]
        await bus.js.publish(moved.subject(), moved.to_json(), headers={"Nats-Msg-Id": "replayed-733"})
        await events.wait_for(lambda c: len(c.ingested) == 2, timeout=30)
    assert not events.failed, events.failed[0].reason
    assert [e.action for e in events.ingested] == ["created", "updated"]
    [dataset] = datasets_of(scicat, scan.scan_id)
    assert dataset["principalInvestigator"] == header["PI"]
    assert dataset["proposalId"] == header["Proposal"]
    [block] = client(scicat).datasets_origdatablocks_get_one(dataset["pid"])
    listed = {f["path"]: f["chk"] for f in block["dataFileList"]}
    assert listed == {p.name: file_checksum(p)[0] for p in (txt, edf)}


async def test_scans_moved_while_scicat_is_down_are_all_catalogued_once_it_returns(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    from datetime import timedelta

    config = catalog_config(
        tmp_path, scicat, "tomography-832", (".h5",), max_deliver=100, backoff=[timedelta(milliseconds=200)]
    )
    rng = np.random.default_rng(5)
    for i in range(3):
        write_scan_832(tmp_path / "source", f"down/tomo_{i}", rng)
    scicat.stop()
    ingestor = build_ingestor(config)
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, events),
        running(ingestor, config, nats_server.url) as ingesting,
    ):
        scans = [announce(tmp_path / "source", "bl832", [f"down/tomo_{i}.h5"]) for i in range(3)]
        for scan in scans:
            await bus.publish(scan)
        await wait_until(lambda: ingesting.stats["retried"] >= 3, what="the ingestor retrying while SciCat is down")
        assert not events.ingested
        await asyncio.to_thread(scicat.start)
        await events.wait_for(lambda c: len(c.ingested) == 3, timeout=60)
    assert not events.failed
    for scan in scans:
        assert len(datasets_of(scicat, scan.scan_id)) == 1


async def test_a_payload_scicat_refuses_is_dead_lettered_with_the_servers_message(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    # The file names no e-mail, so the beamline's configured contact is used, and it is not an address:
    # SciCat answers 400, which is the operator's to fix, so it is dead-lettered at once, not retried.
    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",), contact_email="the beamline staff")
    write_scan_832(
        tmp_path / "source", "bad/tomo", np.random.default_rng(5), pi="Ada Quill", proposal="ALS-11000", email=None
    )
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["bad/tomo.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=30)
    [dead] = events.failed
    assert dead.service == "ingestor" and dead.permanent and dead.error_type == "CatalogRefused"
    assert "400" in dead.reason and "contactEmail must be an email" in dead.reason
    assert dead.deliveries == 1, "a refusal is not retried"
    assert not datasets_of(scicat, scan.scan_id)


async def test_an_unreadable_scan_is_dead_lettered_naming_the_file(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",))
    (tmp_path / "source/junk").mkdir(parents=True)
    (tmp_path / "source/junk/tomo.h5").write_bytes(os.urandom(5000))  # not HDF5 at all
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["junk/tomo.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=30)
    [dead] = events.failed
    assert dead.error_type == "ScanUnreadable" and "tomo.h5" in dead.reason and dead.permanent


async def test_export_controlled_scans_are_not_catalogued(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",))
    rng = np.random.default_rng(9)
    write_scan_832(tmp_path / "source", "open/tomo", rng)
    write_scan_832(tmp_path / "source", "restricted/tomo", rng)
    ingestor = build_ingestor(config)
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, events),
        running(ingestor, config, nats_server.url) as ingesting,
    ):
        restricted = announce(tmp_path / "source", "bl832", ["restricted/tomo.h5"])
        await bus.publish(restricted.model_copy(update={"export_controlled": True}))
        await bus.publish(announce(tmp_path / "source", "bl832", ["open/tomo.h5"]))
        await events.wait_for(lambda c: len(c.moved) == 2 and len(c.ingested) == 1, timeout=30)
        await wait_until(lambda: ingesting.stats["handled"] >= 2, what="the ingestor handling both scans")
    moved = {e.scan_id: e for e in events.moved}
    assert isinstance(moved[restricted.scan_id], ScanMoved) and moved[restricted.scan_id].export_controlled
    assert not datasets_of(scicat, restricted.scan_id)
    assert [e.scan_id for e in events.ingested] != [restricted.scan_id]


async def test_missing_owner_fields_give_a_dataset_from_the_defaults_and_warnings_in_the_ledger(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",))
    write_scan_832(tmp_path / "source", "anon/tomo", np.random.default_rng(6), pi=None, proposal=None, email=None)
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["anon/tomo.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.ingested) == 1, timeout=30)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "catalog:raw" in r.external_ids)
    assert not events.failed
    [dataset] = datasets_of(scicat, scan.scan_id)
    defaults = config.beamlines["bl832"].catalog.defaults  # type: ignore[union-attr]
    assert (dataset["ownerGroup"], dataset["contactEmail"]) == (defaults.owner_group, defaults.contact_email)
    assert dataset["principalInvestigator"] == defaults.principal_investigator
    joined = " | ".join(record.warnings)
    assert "principal investigator" in joined and "e-mail" in joined, record.warnings
    assert events.ingested[0].warnings


async def test_an_alignment_shot_is_not_catalogued(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    config = catalog_config(tmp_path, scicat, "saxs-waxs-733", (".txt", ".edf"))
    rng = np.random.default_rng(4)
    write_scan_733(tmp_path / "source", "align/autoexpose_0001", rng)
    write_scan_733(tmp_path / "source", "align/sample_0001", rng)
    ingestor = build_ingestor(config)
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, events),
        running(ingestor, config, nats_server.url) as ingesting,
    ):
        shot = announce(tmp_path / "source", "bl733", ["align/autoexpose_0001.txt", "align/autoexpose_0001.edf"])
        sample = announce(tmp_path / "source", "bl733", ["align/sample_0001.txt", "align/sample_0001.edf"])
        for scan in (shot, sample):
            await bus.publish(scan.model_copy(update={"beamline": "bl832"}))
        await events.wait_for(lambda c: len(c.ingested) == 1, timeout=30)
        await wait_until(lambda: ingesting.stats["handled"] >= 2, what="the ingestor handling both scans")
    assert [e.scan_id for e in events.ingested] == [sample.scan_id]
    assert not datasets_of(scicat, shot.scan_id) and not events.failed


async def test_an_archive_and_an_analysis_are_added_to_the_scans_dataset(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat
) -> None:
    from beamflow.common.events import FileCopy, ScanAnalyzed, ScanArchived

    config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",), max_deliver=50)
    write_scan_832(tmp_path / "source", "run/tomo", np.random.default_rng(8))
    services = (build_mover(config), build_ledger(config), build_ingestor(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["run/tomo.h5"])
        output = tmp_path / "data/run/tomo_preview.h5"
        output.parent.mkdir(parents=True)
        output.write_bytes(os.urandom(2048))
        digest, size = file_checksum(output)
        analyzed = ScanAnalyzed(
            scan_id=scan.scan_id,
            beamline="bl832",
            compute_site="local",
            job_id="4242",
            exit_status=0,
            runtime_seconds=12.5,
            output_endpoint="data",
            outputs=[FileCopy(path="run/tomo_preview.h5", size=size, checksum=digest, algorithm="xxh3-128")],
        )
        # The analysis result arrives before the scan is catalogued: it waits (retries) for the raw dataset.
        await bus.publish(analyzed)
        await bus.publish(scan)
        await events.wait_for(lambda c: {e.dataset_kind for e in c.ingested} == {"raw", "derived"}, timeout=30)
        archived = ScanArchived(
            scan_id=scan.scan_id,
            beamline="bl832",
            archive_endpoint="tape",
            source_endpoint="data",
            bundle="ALS-11000_2026-2.tar",
            members=["run/tomo.h5"],
        )
        await bus.publish(archived)
        raw_pid = next(e.pid for e in events.ingested if e.dataset_kind == "raw")
        sc = client(scicat)
        await wait_until(
            lambda: "archive" in (sc.datasets_get_one(raw_pid) or {}).get("scientificMetadata", {}),
            what="the archive noted on the raw dataset",
        )
    assert not events.failed
    raw = sc.datasets_get_one(raw_pid)
    assert raw["scientificMetadata"]["archive"]["tape"]["bundle"] == "ALS-11000_2026-2.tar"
    assert raw["scientificMetadata"]["beamflow"]["scan_id"] == scan.scan_id, "the rest of the metadata is kept"
    derived_pid = next(e.pid for e in events.ingested if e.dataset_kind == "derived")
    derived = sc.datasets_get_one(derived_pid)
    assert derived["inputDatasets"] == [raw_pid] and derived["type"] == "derived"
    assert derived["jobParameters"]["job_id"] == "4242" and derived["usedSoftware"]
    [block] = sc.datasets_origdatablocks_get_one(derived_pid)
    assert [(f["path"], f["chk"]) for f in block["dataFileList"]] == [("tomo_preview.h5", digest)]


async def test_an_expired_token_means_a_fresh_login_and_no_duplicate(
    tmp_path: Path, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalSciCat(tmp_path / "scicat.sqlite", token_ttl=1.0) as scicat:
        monkeypatch.setenv(PASSWORD_ENV, scicat.password)
        config = catalog_config(tmp_path, scicat, "tomography-832", (".h5",))
        write_scan_832(tmp_path / "source", "tok/tomo", np.random.default_rng(1))
        services = (build_mover(config), build_ledger(config), build_ingestor(config))
        async with harness(config, nats_server.url, *services) as (bus, events):
            scan = announce(tmp_path / "source", "bl832", ["tok/tomo.h5"])
            await bus.publish(scan)
            await events.wait_for(lambda c: len(c.ingested) == 1, timeout=30)
            # What is tested is time passing: the token the ingestor holds is now expired. SciCat answers
            # reads with an expired token as if from nobody, so the replay below must not trust "not found".
            await asyncio.sleep(1.5)
            moved = events.moved[0]
            await bus.js.publish(moved.subject(), moved.to_json(), headers={"Nats-Msg-Id": "replayed-after-expiry"})
            await events.wait_for(lambda c: len(c.ingested) == 2, timeout=30)
        assert not events.failed, events.failed[0].reason
        assert [e.action for e in events.ingested] == ["created", "updated"]
        assert len(datasets_of(scicat, scan.scan_id)) == 1
