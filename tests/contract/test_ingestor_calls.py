"""The ingestor's own SciCat operations (``beamflow.ingestor.catalog`` and the steps built on it), against
whichever SciCat the contract suite targets: the local one by default, a real backend with
BEAMFLOW_SCICAT_URL. These are the exact payloads the ingestor sends, so a backend that refuses one of
them fails here before it fails in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from beamflow.common.catalog_config import BeamlineCatalog, CatalogDefaults
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.events import FileCopy, ScanArchived, ScanMoved
from beamflow.ingestor import datasets
from beamflow.ingestor.catalog import (
    Catalog,
    CatalogLoginFailed,
    CatalogRefused,
    DatasetPatch,
    OrigDatablockPayload,
    scan_keyword,
)
from beamflow.ingestor.extractors import Extracted, data_uri, thumbnail_png
from beamflow.ingestor.handler import note_archive, upsert_raw
from pyscicat.client import ScicatClient
from pyscicat.model import RawDataset
from tests.contract.conftest import SciCatTarget

ENDPOINT = FilesystemEndpoint(root=Path("/data/beamflow-contract"))


def settings(owner_group: str) -> BeamlineCatalog:
    return BeamlineCatalog(
        destination="data",
        technique="tomography-832",
        creation_location="/ALS/contract",
        defaults=CatalogDefaults(
            owner_group=owner_group, contact_email="staff@example.org", principal_investigator="Staff"
        ),
    )


def moved(scan_id: str) -> ScanMoved:
    return ScanMoved(
        scan_id=scan_id,
        beamline="bl832",
        source_endpoint="source",
        destination_endpoint="data",
        step=1,
        files=[
            FileCopy(path="2026/run/a.h5", size=10, checksum="0" * 32, algorithm="xxh3-128"),
            FileCopy(path="2026/run/b.h5", size=20, checksum="1" * 32, algorithm="xxh3-128"),
        ],
        bytes=30,
        seconds=0.1,
        copied=True,
        scan_path="2026/run/a",
    )


@dataclass
class Step:
    """What the ingestor's raw-dataset step sends for one scan."""

    catalog: Catalog
    who: datasets.Owners
    raw: RawDataset
    block: OrigDatablockPayload
    thumbnail: str

    def upsert(self, scan_id: str, thumbnail: bool = True) -> tuple[str, str]:
        picture = self.thumbnail if thumbnail else None
        return self.catalog.session(lambda c: upsert_raw(c, scan_id, self.raw, self.block, picture, self.who))


def step(scicat: SciCatTarget, unique: str) -> Step:
    catalog = Catalog(scicat.url, scicat.username, scicat.password, 30)
    event = moved(unique)
    extracted = Extracted(
        dataset_name=unique,
        description="contract test",
        scientific_metadata={"energy": {"value": 25.0, "unit": "keV"}},
        principal_investigator="Ada Quill",
        proposal=scicat.owner_group,
        owner_email="ada@example.org",
    )
    who = datasets.owners(extracted, settings(scicat.owner_group))
    raw = datasets.raw_dataset(event, extracted, who, settings(scicat.owner_group), ENDPOINT)
    block = datasets.origdatablock(event.files, {}, ENDPOINT, datetime.now(UTC))
    thumbnail = data_uri(thumbnail_png(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)))
    return Step(catalog, who, raw, block, thumbnail)


def test_the_ingestors_raw_dataset_is_accepted_and_a_repeat_finds_it(scicat: SciCatTarget, unique: str) -> None:
    made = step(scicat, unique)
    catalog = made.catalog
    pid, action = made.upsert(unique)
    again, repeat = made.upsert(unique)
    assert (action, repeat) == ("created", "updated") and again == pid
    found = catalog.find_by_keyword(scan_keyword(unique))
    assert found is not None and found["pid"] == pid
    assert found["sourceFolder"] == "/data/beamflow-contract/2026/run"
    [listed] = catalog.origdatablocks(pid)
    assert sorted(f["path"] for f in listed["dataFileList"]) == ["a.h5", "b.h5"]
    assert len(catalog.attachments(pid)) == 1


def test_the_archive_note_keeps_the_rest_of_the_metadata(scicat: SciCatTarget, unique: str) -> None:
    made = step(scicat, unique)
    catalog = made.catalog
    pid, _ = made.upsert(unique, thumbnail=False)
    archived = ScanArchived(
        scan_id=unique,
        beamline="bl832",
        archive_endpoint="tape",
        source_endpoint="data",
        bundle="P_2026-2.tar",
        members=["2026/run/a.h5", "2026/run/b.h5"],
    )
    assert catalog.session(lambda c: note_archive(c, archived)) == pid
    metadata = (catalog.get(pid) or {})["scientificMetadata"]
    assert metadata["archive"]["tape"]["bundle"] == "P_2026-2.tar"
    assert metadata["energy"] == {"value": 25.0, "unit": "keV"}


def test_a_field_the_backend_does_not_know_is_a_refusal_not_a_retry(scicat: SciCatTarget, unique: str) -> None:
    made = step(scicat, unique)
    pid, _ = made.upsert(unique, thumbnail=False)

    class Unknown(DatasetPatch):
        notAField: str = "x"

    with pytest.raises(CatalogRefused, match="400"):
        made.catalog.session(lambda c: c.patch(pid, Unknown()))


def test_wrong_credentials_are_a_login_failure(scicat: SciCatTarget, client: ScicatClient) -> None:
    catalog = Catalog(scicat.url, scicat.username, scicat.password + "-wrong", 30)
    with pytest.raises(CatalogLoginFailed, match="refused the login"):
        catalog.find_by_keyword("anything")
