"""beamflow's Globus controllers end to end: the mover copies to a Globus endpoint and the pruner checks and
deletes through Globus, with the unmodified globus-sdk talking to the local Globus stand-in, which really
copies and deletes the files. Every way a task ends is seen: SUCCEEDED, FAILED (FILE_NOT_FOUND,
PERMISSION_DENIED), ACTIVE past its deadline, INACTIVE too long, and a service account Globus refuses.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from beamflow.common.checksums import file_checksum
from beamflow.common.config import BeamflowConfig, Destination
from beamflow.common.endpoints import FilesystemEndpoint, GlobusEndpoint, GlobusMount, RetentionRule
from beamflow.common.errors import CredentialsRejected, SourceMissing
from beamflow.common.events import FileCopy
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.prune_globus import GlobusPrune
from beamflow.common.secrets import SecretRef
from beamflow.common.testing import harness, running, test_config, wait_for_record
from beamflow.common.transfer_globus import GlobusTransfer
from beamflow.globus_local.testing import LocalGlobus
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from tests.integration.test_mover import announce, write

pytestmark = pytest.mark.timeout(60)


@dataclass
class Facility:
    """A beamline folder that is also a Globus collection, and a remote Globus endpoint (NERSC's stand-in)."""

    globus: LocalGlobus
    beamline_collection: str
    nersc_collection: str
    nersc_site: Path
    config: BeamflowConfig

    def nersc_file(self, relpath: str) -> Path:
        return self.nersc_site / "cfs/beamflow" / relpath


def facility_config(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, *, writable: bool = True, **nersc: Any
) -> Facility:
    for name, value in globus.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEST_GLOBUS_ID", globus.client_credentials.client_id)
    monkeypatch.setenv("TEST_GLOBUS_SECRET", globus.client_credentials.client_secret)
    beamline_collection, nersc_collection = str(uuid.uuid4()), str(uuid.uuid4())
    globus.add_collection(beamline_collection, tmp_path / "beamline-collection")
    nersc_site = tmp_path / "nersc-site"
    globus.add_collection(nersc_collection, nersc_site, writable=writable)
    base = test_config(tmp_path, max_deliver=1, ack_wait=timedelta(seconds=10), **nersc.pop("delivery", {}))
    data = FilesystemEndpoint(
        root=tmp_path / "beamline-collection/data",
        globus=GlobusMount(collection_id=uuid.UUID(beamline_collection), path="/data"),
        retention=nersc.pop("data_retention", None),
    )
    data.root.mkdir(parents=True, exist_ok=True)
    remote = GlobusEndpoint(
        collection_id=uuid.UUID(nersc_collection),
        root="/cfs/beamflow",
        client_id=SecretRef(env="TEST_GLOBUS_ID"),
        client_secret=SecretRef(env="TEST_GLOBUS_SECRET"),
        poll_interval=timedelta(milliseconds=200),
        leaves_facility=True,
        **nersc,
    )
    beamline = base.beamlines["bl832"].model_copy(
        update={"destinations": [Destination(endpoint="data"), Destination(endpoint="nersc", source="data")]}
    )
    config = base.model_copy(
        update={"endpoints": {**base.endpoints, "data": data, "nersc": remote}, "beamlines": {"bl832": beamline}}
    )
    return Facility(globus, beamline_collection, nersc_collection, nersc_site, config)


@pytest.fixture
def globus(tmp_path: Path) -> Any:
    with LocalGlobus(tmp_path / "globus", retry_interval=0.1) as local:
        yield local


async def test_a_scan_reaches_a_globus_endpoint_verified_with_its_task_id_and_speed(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch)
    src = write(tmp_path / "source/P-1/tomo 1.h5", os.urandom(300_000))
    old = 1_700_000_000
    os.utime(src, (old, old))
    services = (build_mover(site.config), build_ledger(site.config))
    async with harness(site.config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/tomo 1.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.moved) + len(c.failed) >= 2, timeout=30)
        record = await wait_for_record(bus.js, scan.scan_id, lambda r: "nersc" in r.copies)
    assert not events.failed, events.failed[0].reason
    [to_nersc] = [m for m in events.moved if m.destination_endpoint == "nersc"]
    task = globus.api.task(to_nersc.external_id or "")
    assert task is not None, "the external id is the Globus task's id"
    copy = site.nersc_file("P-1/tomo 1.h5")
    assert copy.read_bytes() == src.read_bytes() and int(copy.stat().st_mtime) == old
    assert [f.checksum for f in to_nersc.files] == [file_checksum(src)[0]]
    assert to_nersc.rate_bytes_per_second is not None and to_nersc.rate_bytes_per_second > 0
    assert record.copies["nersc"].external_id == to_nersc.external_id
    assert record.external_ids["transfer:nersc"] == to_nersc.external_id


async def test_a_destination_the_account_may_not_write_fails_with_permission_denied(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch, writable=False)
    write(tmp_path / "source/P-1/scan_2.h5", os.urandom(1000))
    async with harness(site.config, nats_server.url, build_mover(site.config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_2.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=30)
    [dead] = events.failed
    assert "PERMISSION_DENIED" in dead.reason and "grant endpoint nersc" in dead.reason, dead.reason
    assert [m.destination_endpoint for m in events.moved] == ["data"], "the local copy is made, the remote is not"


async def test_a_task_still_active_at_its_deadline_is_cancelled_and_fails_the_step(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch, deadline=timedelta(seconds=1))
    globus.api.stall(site.nersc_collection)
    write(tmp_path / "source/P-1/scan_3.h5", os.urandom(1000))
    async with harness(site.config, nats_server.url, build_mover(site.config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_3.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=30)
    [dead] = events.failed
    # Globus fails a task at the deadline it was given (EXPIRED); beamflow's own watch would cancel it too.
    assert "EXPIRED" in dead.reason and "past its deadline" in dead.reason, dead.reason
    task_id = dead.reason.split("task ")[1].split()[0]
    task = globus.api.task(task_id)
    assert task is not None and task.status == "FAILED"
    assert not site.nersc_file("P-1/scan_3.h5").exists()


async def test_a_task_inactive_too_long_is_cancelled(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch, inactive_limit=timedelta(milliseconds=500))
    globus.api.stall(site.nersc_collection, inactive=True)
    write(tmp_path / "source/P-1/scan_4.h5", os.urandom(1000))
    async with harness(site.config, nats_server.url, build_mover(site.config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_4.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=30)
    [dead] = events.failed
    assert "stayed INACTIVE" in dead.reason and "it was cancelled" in dead.reason, dead.reason
    task_id = dead.reason.split("task ")[1].split()[0]
    task = globus.api.task(task_id)
    assert task is not None and task.status == "FAILED", "beamflow cancelled the task at Globus"


async def test_a_service_account_globus_refuses_stops_the_mover_from_starting_and_fails_a_copy(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch)
    monkeypatch.setenv("TEST_GLOBUS_SECRET", "not-the-secret")
    with pytest.raises(CredentialsRejected) as refused:
        async with running(build_mover(site.config), site.config, nats_server.url):
            pass
    said = str(refused.value)
    assert said.startswith("mover will not start: globus:nersc:") and "invalid_client" in said, said
    assert "not-the-secret" not in said
    # Revoked after the start: the copy itself fails, permanently, saying so.
    write(tmp_path / "beamline-collection/data/P-1/scan_5.h5", os.urandom(10))
    with pytest.raises(CredentialsRejected, match="refused the service account of endpoint nersc"):
        await GlobusTransfer().transfer(
            "data", site.config.endpoints["data"], "nersc", site.config.endpoints["nersc"], ["P-1/scan_5.h5"]
        )


async def test_a_file_missing_at_a_globus_source_is_file_not_found(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch)
    nersc, data = site.config.endpoints["nersc"], site.config.endpoints["data"]
    controller = GlobusTransfer()
    with pytest.raises(SourceMissing, match="FILE_NOT_FOUND"):
        await controller.transfer("nersc", nersc, "data", data, ["P-1/never-written.h5"])
    # Back the other way a file that is there arrives, with beamflow's checksum read at the destination.
    there = write(site.nersc_file("P-1/back.h5"), os.urandom(5000))
    result = await controller.transfer("nersc", nersc, "data", data, ["P-1/back.h5"])
    assert (tmp_path / "beamline-collection/data/P-1/back.h5").read_bytes() == there.read_bytes()
    assert [f.checksum for f in result.files] == [file_checksum(there)[0]]
    assert controller.requests <= 6, f"a short task should cost few requests, made {controller.requests}"


async def test_the_pruner_checks_the_globus_copy_by_listing_then_deletes_the_local_one(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, nats_server: EmbeddedNats
) -> None:
    rule = RetentionRule(keep_for=timedelta(seconds=1), check_endpoint="nersc")
    site = facility_config(tmp_path, globus, monkeypatch, data_retention=rule)
    write(tmp_path / "source/P-1/scan_6.h5", os.urandom(2000))
    services = (build_mover(site.config), build_ledger(site.config), build_pruner(site.config))
    async with harness(site.config, nats_server.url, *services) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_6.h5"]))
        await events.wait_for(lambda c: len(c.pruned) + len(c.failed) >= 1, timeout=30)
    assert not events.failed, events.failed[0].reason
    [pruned] = events.pruned
    assert (pruned.endpoint, pruned.check_endpoint) == ("data", "nersc")
    assert not (tmp_path / "beamline-collection/data/P-1/scan_6.h5").exists()
    assert site.nersc_file("P-1/scan_6.h5").exists()


def test_globus_prune_checks_sizes_and_deletes_through_a_delete_task(
    tmp_path: Path, globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = facility_config(tmp_path, globus, monkeypatch)
    nersc = site.config.endpoints["nersc"]
    kept = write(site.nersc_file("P-1/a.h5"), b"x" * 100)
    files = [FileCopy(path="P-1/a.h5", size=100, checksum="", algorithm="globus")]
    prune = GlobusPrune()
    assert prune.check_copy("nersc", nersc, files) == []
    grown = [files[0].model_copy(update={"size": 99})]
    assert "has 100 bytes" in prune.check_copy("nersc", nersc, grown)[0]
    assert "missing" in prune.check_copy("nersc", nersc, [files[0].model_copy(update={"path": "P-2/b.h5"})])[0]
    assert "changed after it was copied" in prune.check_source("nersc", nersc, grown)[0]
    gone = [*files, FileCopy(path="P-1/already-gone.h5", size=1, checksum="", algorithm="globus")]
    deleted = prune.delete("nersc", nersc, gone)
    assert not kept.exists() and deleted.files == ["P-1/a.h5", "P-1/already-gone.h5"]
    assert ("POST", "/v0.10/delete") in {(m, p) for m, p, _ in globus.api.calls}
