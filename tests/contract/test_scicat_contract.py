"""The SciCat calls the beamflow ingestor makes, through the unmodified pyscicat client, held against whatever
SciCat is configured (see conftest.py): the local one by default, a real backend with BEAMFLOW_SCICAT_URL.

Refusals are asserted on what holds for both: pyscicat raises ``ScicatCommError`` whose message carries the
status and the offending field's name (the real backend renders dataset validation errors as one JSON
string, the others as a list; both name the field). Tests using ``local_scicat`` also check exact bodies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from beamflow.scicat_local import LocalSciCat
from pydantic import BaseModel
from pyscicat.client import ScicatClient, ScicatCommError, ScicatLoginError, from_credentials, get_token
from pyscicat.model import Attachment, CreateDatasetOrigDatablockDto, DataFile, DerivedDataset, RawDataset

from .conftest import SciCatTarget

# A 1x1 PNG, as the ingestor's thumbnails are PNG data URIs.
PNG_DATA_URI = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class DatasetPatch(BaseModel):
    """A PATCH body with only the fields to change: pyscicat's RawDataset always carries ``type``, which the
    backend's PATCH refuses (see test_patch_with_a_full_pyscicat_model_is_refused)."""

    scientificMetadata: dict[str, Any] | None = None
    keywords: list[str] | None = None
    description: str | None = None


class OrigDatablockBody(CreateDatasetOrigDatablockDto):
    """pyscicat 0.4.8 types ``chkAlg`` as an int; the backend wants the algorithm's name, a string."""

    chkAlg: str | None = None  # type: ignore[assignment]


def raw_dataset(target: SciCatTarget, name: str, **fields: Any) -> RawDataset:
    values: dict[str, Any] = {
        "datasetName": name,
        "owner": "Beamflow Contract",
        "ownerGroup": target.owner_group,
        "contactEmail": "beamflow-contract@example.org",
        "sourceFolder": f"/data/beamflow-contract/{name}",
        "creationTime": "2024-05-01T12:00:00Z",
        "principalInvestigator": "Ada Lovelace",
        "creationLocation": "/ALS/7.3.3",
        "scientificMetadata": {"beamflow_scan_id": name, "exposure_s": 0.5},
    }
    values.update(fields)
    return RawDataset(**values)


def derived_dataset(target: SciCatTarget, name: str, inputs: list[str], **fields: Any) -> DerivedDataset:
    values: dict[str, Any] = {
        "datasetName": name,
        "owner": "Beamflow Contract",
        "ownerGroup": target.owner_group,
        "contactEmail": "beamflow-contract@example.org",
        "sourceFolder": f"/data/beamflow-contract/{name}/reduced",
        "creationTime": "2024-05-01T13:00:00Z",
        "investigator": "Ada Lovelace",
        "inputDatasets": inputs,
        "usedSoftware": ["https://github.com/example/reduction@v1.2.3"],
        "jobParameters": {"binning": 2},
    }
    values.update(fields)
    return DerivedDataset(**values)


def refused(exc: pytest.ExceptionInfo[ScicatCommError], status: int, *words: str) -> None:
    message = exc.value.message
    assert str(status) in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message}"


def get_json(target: SciCatTarget, client: ScicatClient, endpoint: str, **params: str) -> Any:
    """A GET pyscicat has no method for, sent the way pyscicat sends its calls."""
    response = requests.get(
        f"{target.url}/{endpoint}",
        params={"access_token": client._token, **params},
        headers={"Authorization": f"Bearer {client._token}"},
        timeout=10,
    )
    assert response.ok, response.text
    return response.json()


# Login ------------------------------------------------------------------------------------------------------


def test_login_gives_a_token_the_client_uses(scicat: SciCatTarget) -> None:
    client = ScicatClient(scicat.url, username=scicat.username, password=scicat.password)
    assert isinstance(client._token, str) and client._token
    assert client.datasets_get_many({"datasetName": "beamflow-contract-none"}) == []


def test_wrong_password_is_refused(scicat: SciCatTarget) -> None:
    with pytest.raises(ScicatLoginError):
        get_token(scicat.url, scicat.username, scicat.password + "-wrong")
    with pytest.raises(ScicatLoginError):
        from_credentials(scicat.url, "beamflow-no-such-user", "whatever")


# Raw dataset: create, get, find, patch ------------------------------------------------------------------------


def test_raw_dataset_is_created_and_read_back_by_its_pid(
    scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique, keywords=["beamflow", f"scan:{unique}"]))
    assert "/" in pid  # the pid has a prefix: every path below must encode it

    dataset = client.datasets_get_one(pid)
    assert dataset is not None
    assert dataset["pid"] == pid
    assert dataset["type"] == "raw"
    assert dataset["datasetName"] == unique
    assert dataset["principalInvestigator"] == "Ada Lovelace"
    assert dataset["scientificMetadata"]["beamflow_scan_id"] == unique
    assert dataset["scientificMetadata"]["exposure_s"] == 0.5
    assert dataset["creationTime"].startswith("2024-05-01T12:00:00")


def test_find_by_dataset_name_scan_id_and_keyword(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique, keywords=[f"scan:{unique}"]))
    client.datasets_create(raw_dataset(scicat, unique + "-other", keywords=[f"scan:{unique}-other"]))

    for where in (
        {"datasetName": unique},
        {"scientificMetadata.beamflow_scan_id": unique},
        {"keywords": f"scan:{unique}"},  # equality with an array field: "contains"
        {"datasetName": {"inq": [unique, "beamflow-contract-absent"]}},
        {"datasetName": unique, "sourceFolder": f"/data/beamflow-contract/{unique}"},
    ):
        found = client.datasets_get_many(where)
        assert [d["pid"] for d in found or []] == [pid], where

    assert client.datasets_get_many({"scientificMetadata.beamflow_scan_id": unique + "-absent"}) == []


def test_patch_adds_metadata_and_keywords(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    before = client.datasets_get_one(pid)
    assert before is not None

    metadata = {**before["scientificMetadata"], "beamflow_copies": ["nersc", "tape"]}
    assert client.datasets_update(DatasetPatch(scientificMetadata=metadata, keywords=["archived"]), pid) == pid

    after = client.datasets_get_one(pid)
    assert after is not None
    assert after["scientificMetadata"]["beamflow_copies"] == ["nersc", "tape"]
    assert after["scientificMetadata"]["beamflow_scan_id"] == unique
    assert after["keywords"] == ["archived"]
    assert after["datasetName"] == unique  # fields not sent are untouched
    assert client.datasets_get_many({"scientificMetadata.beamflow_copies": "tape"})[0]["pid"] == pid


def test_patch_replaces_scientific_metadata_as_a_whole(
    local_scicat: LocalSciCat, scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    # The backend's PATCH is a top-level $set: an entry not sent again is gone. The ingestor sends the merge.
    pid = client.datasets_create(raw_dataset(scicat, unique))
    client.datasets_update(DatasetPatch(scientificMetadata={"only": 1}), pid)
    after = client.datasets_get_one(pid)
    assert after is not None
    assert after["scientificMetadata"] == {"only": 1}


def test_pid_with_a_slash_works_raw_in_the_path_on_the_local_server(
    local_scicat: LocalSciCat, scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    prefix, _, rest = pid.partition("/")
    assert rest
    raw_form = get_json(scicat, client, f"Datasets/{pid}")
    encoded_form = get_json(scicat, client, f"datasets/{prefix}%2F{rest}")
    assert raw_form["pid"] == encoded_form["pid"] == pid


# Datablocks, attachments, derived datasets ---------------------------------------------------------------------


def test_origdatablock_with_checksums_is_stored_and_counted(
    scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    files = [
        DataFile(path=f"scan_{i:04d}.edf", size=1000 + i, time=f"2024-05-01T12:00:0{i}Z", chk=f"{i:032x}")
        for i in range(3)
    ]
    block = client.datasets_origdatablock_create(
        pid, OrigDatablockBody(size=sum(f.size for f in files), chkAlg="xxh3-128", dataFileList=files)
    )
    assert block["size"] == 3003
    assert block["chkAlg"] == "xxh3-128"

    blocks = client.datasets_origdatablocks_get_one(pid)
    assert blocks is not None and len(blocks) == 1
    stored = blocks[0]
    assert stored["datasetId"] == pid
    assert [f["path"] for f in stored["dataFileList"]] == [f.path for f in files]
    assert [f["chk"] for f in stored["dataFileList"]] == [f.chk for f in files]
    # The backend adds the block's size and file count to the dataset (so do not also set them on create).
    dataset = client.datasets_get_one(pid)
    assert dataset is not None
    assert (dataset["size"], dataset["numberOfFiles"]) == (3003, 3)


def test_attachment_with_a_data_uri_thumbnail(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    created = client.datasets_attachment_create(
        Attachment(
            datasetId=pid, ownerGroup=scicat.owner_group, caption=f"thumbnail of {unique}", thumbnail=PNG_DATA_URI
        )
    )
    assert created["caption"] == f"thumbnail of {unique}"

    attachments = get_json(scicat, client, f"Datasets/{pid.replace('/', '%2F')}/attachments")
    assert [(a["caption"], a["thumbnail"], a["datasetId"]) for a in attachments] == [
        (f"thumbnail of {unique}", PNG_DATA_URI, pid)
    ]


def test_derived_dataset_links_its_raw_input(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    raw_pid = client.datasets_create(raw_dataset(scicat, unique))
    derived_pid = client.datasets_create(derived_dataset(scicat, unique + "-reduced", [raw_pid]))

    derived = client.datasets_get_one(derived_pid)
    assert derived is not None
    assert derived["type"] == "derived"
    assert derived["inputDatasets"] == [raw_pid]
    assert derived["jobParameters"] == {"binning": 2}
    linked = client.datasets_get_many({"inputDatasets": raw_pid})
    assert [d["pid"] for d in linked or []] == [derived_pid]


# Refusals: these hold on the local SciCat and on the real backend ----------------------------------------------


class RawWithUnknownField(RawDataset):
    beamflowUnknownField: str


class RawWithoutPrincipalInvestigator(RawDataset):
    principalInvestigator: str | None = None  # type: ignore[assignment]


class DerivedWithoutUsedSoftware(DerivedDataset):
    usedSoftware: list[str] | None = None  # type: ignore[assignment]


def test_unknown_field_is_refused(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    dataset = RawWithUnknownField(**raw_dataset(scicat, unique).model_dump(), beamflowUnknownField="x")
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_create(dataset)
    refused(exc, 400, "beamflowUnknownField", "should not exist")
    assert client.datasets_get_many({"datasetName": unique}) == []


def test_raw_dataset_without_principal_investigator_is_refused(
    scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    values = raw_dataset(scicat, unique).model_dump()
    values.pop("principalInvestigator")
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_create(RawWithoutPrincipalInvestigator(**values))
    refused(exc, 400, "principalInvestigator")


def test_derived_dataset_without_used_software_is_refused(
    scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    values = derived_dataset(scicat, unique, ["20.500.12269/none"]).model_dump()
    values.pop("usedSoftware")
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_create(DerivedWithoutUsedSoftware(**values))
    refused(exc, 400, "usedSoftware")


def test_attachment_without_caption_is_refused(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_attachment_create(
            Attachment(datasetId=pid, ownerGroup=scicat.owner_group, thumbnail=PNG_DATA_URI)
        )
    refused(exc, 400, "caption")


def test_datafile_without_time_is_refused(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    pid = client.datasets_create(raw_dataset(scicat, unique))
    body = CreateDatasetOrigDatablockDto(size=10, dataFileList=[DataFile(path="a.edf", size=10, chk="ab")])
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_origdatablock_create(pid, body)
    refused(exc, 400, "time")
    assert client.datasets_origdatablocks_get_one(pid) == []


def test_patch_with_a_full_pyscicat_model_is_refused(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    # pyscicat's datasets_update with its own RawDataset sends `type`, which the PATCH DTO does not declare.
    dataset = raw_dataset(scicat, unique)
    pid = client.datasets_create(dataset)
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_update(dataset, pid)
    refused(exc, 400, "type")


def test_anonymous_reads_never_see_private_datasets(scicat: SciCatTarget, client: ScicatClient, unique: str) -> None:
    # A bad or expired token does not fail a read: the backend answers as to an anonymous caller, which sees
    # published datasets only, *whatever the filter*. A find-by-key must check the key of what comes back.
    pid = client.datasets_create(raw_dataset(scicat, unique))
    anonymous = ScicatClient(scicat.url, token="beamflow-not-a-valid-token")
    found = anonymous.datasets_get_many({"datasetName": unique}) or []
    assert pid not in [d["pid"] for d in found]
    assert all(d.get("isPublished") is True for d in found)
    with pytest.raises(ScicatCommError) as exc:
        anonymous.datasets_get_one(pid)
    refused(exc, 403)


# Local only: token expiry and the exact error bodies ---------------------------------------------------------------


def test_expired_token_is_refused_on_writes(local_scicat: LocalSciCat, scicat: SciCatTarget, tmp_path: Path) -> None:
    # token_ttl=0: every token is expired when issued, so expiry needs no waiting.
    with LocalSciCat(tmp_path / "expiring.db", token_ttl=0) as expiring:
        client = from_credentials(expiring.url, expiring.username, expiring.password)
        with pytest.raises(ScicatCommError) as exc:
            client.datasets_create(raw_dataset(scicat, "beamflow-contract-expired"))
        refused(exc, 401, "Unauthorized")
        response = requests.post(
            f"{expiring.url}/Datasets",
            json=raw_dataset(scicat, "beamflow-contract-expired").model_dump(exclude_none=True),
            headers={"Authorization": f"Bearer {client._token}"},
            timeout=10,
        )
        assert (response.status_code, response.json()) == (401, {"message": "Unauthorized", "statusCode": 401})


def test_error_bodies_have_the_backends_shape(
    local_scicat: LocalSciCat, scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    headers = {"Authorization": f"Bearer {client._token}"}
    body = raw_dataset(scicat, unique).model_dump(exclude_none=True)
    body.pop("owner")
    body["beamflowUnknownField"] = 1
    body["size"] = "12"
    response = requests.post(f"{scicat.url}/datasets", json=body, headers=headers, timeout=10)
    assert response.status_code == 400
    answer = response.json()
    assert answer["statusCode"] == 400 and answer["error"] == "Bad Request"
    assert set(answer["message"]) == {
        "owner should not be empty",
        "owner must be a string",
        "size must be an integer number",
        "property beamflowUnknownField should not exist",
    }

    response = requests.get(f"{scicat.url}/Datasets/{unique}%2Fnone", headers=headers, timeout=10)
    assert (response.status_code, response.json()) == (
        404,
        {"message": f"dataset: {unique}/none not found", "error": "Not Found", "statusCode": 404},
    )


def test_duplicate_pid_is_a_conflict(
    local_scicat: LocalSciCat, scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    pid = f"{local_scicat.pid_prefix}/{unique}"
    assert client.datasets_create(raw_dataset(scicat, unique, pid=pid)) == pid
    with pytest.raises(ScicatCommError) as exc:
        client.datasets_create(raw_dataset(scicat, unique, pid=pid))
    refused(exc, 409, "already exists")


def test_filter_paging_and_projection(
    local_scicat: LocalSciCat, scicat: SciCatTarget, client: ScicatClient, unique: str
) -> None:
    pids = [client.datasets_create(raw_dataset(scicat, f"{unique}-{i}", keywords=[unique])) for i in range(3)]
    query = {
        "where": {"keywords": unique},
        "fields": ["pid", "datasetName"],
        "limits": {"skip": 1, "limit": 1, "order": "datasetName:desc"},
    }
    page = get_json(scicat, client, "Datasets", filter=json.dumps(query))
    assert page == [{"pid": pids[1], "datasetName": f"{unique}-1"}]
    count = get_json(scicat, client, "Datasets/count", filter=json.dumps({"where": {"keywords": unique}}))
    assert count == {"count": 3}
