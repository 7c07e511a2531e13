"""The local SciCat keeps its catalog across restarts, and "stopped" really means the port refuses calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from beamflow.scicat_local import LocalSciCat, start_process
from pyscicat.client import ScicatClient, from_credentials
from pyscicat.model import CreateDatasetOrigDatablockDto, DataFile, RawDataset


def raw_dataset(name: str) -> RawDataset:
    return RawDataset(
        datasetName=name,
        owner="Beamflow Test",
        ownerGroup="beamflow",
        contactEmail="beamflow@example.org",
        sourceFolder=f"/data/{name}",
        creationTime="2024-05-01T12:00:00Z",
        principalInvestigator="Ada Lovelace",
        creationLocation="/ALS/7.3.3",
        scientificMetadata={"beamflow_scan_id": name},
    )


def refuses_connections(url: str) -> bool:
    try:
        requests.get(f"{url}/health", timeout=5)
    except requests.ConnectionError:
        return True
    return False


def test_catalog_and_tokens_survive_a_restart_on_the_same_port(tmp_path: Path) -> None:
    with LocalSciCat(tmp_path / "catalog.db") as scicat:
        url, port = scicat.url, scicat.port
        client = from_credentials(url, scicat.username, scicat.password)
        pid = client.datasets_create(raw_dataset("survivor"))
        block = CreateDatasetOrigDatablockDto(
            size=5, dataFileList=[DataFile(path="a.edf", size=5, time="2024-05-01T12:00:00Z", chk="ab")]
        )
        client.datasets_origdatablock_create(pid, block)

        scicat.stop()
        assert not scicat.running
        assert refuses_connections(url)

        scicat.start()
        assert (scicat.url, scicat.port) == (url, port)
        # The same client, with the token issued before the restart, carries on.
        dataset = client.datasets_get_one(pid)
        assert dataset is not None and dataset["datasetName"] == "survivor" and dataset["size"] == 5
        assert [b["size"] for b in client.datasets_origdatablocks_get_one(pid) or []] == [5]
        assert [
            d["pid"] for d in client.datasets_get_many({"scientificMetadata.beamflow_scan_id": "survivor"}) or []
        ] == [pid]


def test_stop_cuts_kept_alive_connections(tmp_path: Path) -> None:
    with LocalSciCat(tmp_path / "catalog.db") as scicat, requests.Session() as session:
        assert session.get(f"{scicat.url}/health", timeout=5).json() == {"status": "ok"}
        scicat.stop()
        # The pooled keep-alive connection must not be answered by a lingering handler thread.
        with pytest.raises(requests.ConnectionError):
            session.get(f"{scicat.url}/health", timeout=5)
        scicat.restart()
        assert session.get(f"{scicat.url}/health", timeout=5).status_code == 200


def test_a_new_server_on_the_same_file_serves_the_same_catalog(tmp_path: Path) -> None:
    users = {"ingestor": "a-test-password"}
    with LocalSciCat(tmp_path / "catalog.db", users=users) as first:
        pid = from_credentials(first.url, "ingestor", "a-test-password").datasets_create(raw_dataset("kept"))
    assert refuses_connections(first.url)
    with LocalSciCat(tmp_path / "catalog.db", users=users) as second:
        client = from_credentials(second.url, "ingestor", "a-test-password")
        assert [d["pid"] for d in client.datasets_get_many({"datasetName": "kept"}) or []] == [pid]


def test_process_serves_until_sigterm_and_restarts_on_the_same_port(tmp_path: Path) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps({"users": [{"username": "ingestor", "password": "process-password"}]}))
    db = tmp_path / "catalog.db"

    first = start_process(db, 0, users_file=users_file)
    try:
        client = from_credentials(first.url, "ingestor", "process-password")
        pid = client.datasets_create(raw_dataset("from-a-process"))
    finally:
        assert first.stop() == 0
    assert refuses_connections(first.url)

    port = urlsplit(first.url).port
    assert port is not None
    with start_process(db, port, users_file=users_file) as second:
        assert second.url == first.url
        client = ScicatClient(second.url, username="ingestor", password="process-password")
        dataset = client.datasets_get_one(pid)
        assert dataset is not None and dataset["datasetName"] == "from-a-process"


def test_command_line_refuses_to_start_without_users(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "beamflow.scicat_local", "--db", str(tmp_path / "c.db"), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "no users" in result.stderr
    assert not (tmp_path / "c.db").exists()
