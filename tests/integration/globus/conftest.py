"""A local Globus per test (``LocalGlobus``), two collections on it, and the unmodified globus-sdk pointed at it.

``site.transfer`` is a ``globus_sdk.TransferClient(app=ClientApp(...))`` with transport retries off, so a refused
call fails at once; ``site.client(retries=...)`` makes more. Helpers poll a task with a deadline loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import globus_sdk
import pytest
from beamflow.globus_local.api import GlobusApi
from beamflow.globus_local.auth import ClientCredentials
from beamflow.globus_local.testing import LocalGlobus
from globus_sdk import GlobusAppConfig
from globus_sdk.transport import RetryConfig

TERMINAL = frozenset({"SUCCEEDED", "FAILED"})


def transfer_client(credentials: ClientCredentials, *, retries: int = 0) -> globus_sdk.TransferClient:
    """An unmodified SDK client as a service account builds it (tokens kept in memory, not in ~/.globus)."""
    app = globus_sdk.ClientApp(
        "beamflow-tests",
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
        config=GlobusAppConfig(token_storage="memory"),
    )
    return globus_sdk.TransferClient(app=app, retry_config=RetryConfig(max_retries=retries))


@dataclass
class Site:
    """The stand-in, a source and a destination collection, and an SDK client logged in to it."""

    globus: LocalGlobus
    source_id: str
    source: Path
    destination_id: str
    destination: Path
    transfer: globus_sdk.TransferClient

    @property
    def api(self) -> GlobusApi:
        return self.globus.api

    def client(self, *, retries: int = 0, credentials: ClientCredentials | None = None) -> globus_sdk.TransferClient:
        return transfer_client(credentials or self.globus.client_credentials, retries=retries)

    def wait_task(self, task_id: str, statuses: frozenset[str] = TERMINAL, timeout: float = 5.0) -> dict[str, Any]:
        """Poll ``get_task`` until the status is one of ``statuses``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            document: dict[str, Any] = self.transfer.get_task(task_id).data
            if document["status"] in statuses:
                return document
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} still {document['status']} after {timeout} s: {document}")
            time.sleep(0.02)

    def wait_nice_status(self, task_id: str, nice_status: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            document: dict[str, Any] = self.transfer.get_task(task_id).data
            if document["nice_status"] == nice_status:
                return document
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} never showed nice_status {nice_status}: {document}")
            time.sleep(0.02)

    def events(self, task_id: str) -> list[dict[str, Any]]:
        return [dict(event) for event in self.transfer.task_event_list(task_id, limit=1000)]


@pytest.fixture
def globus(tmp_path: Path) -> Iterator[LocalGlobus]:
    with LocalGlobus(tmp_path / "globus", retry_interval=0.1) as local:
        yield local


@pytest.fixture
def site(globus: LocalGlobus, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Site:
    for name, value in globus.env.items():
        monkeypatch.setenv(name, value)
    source_id, destination_id = str(uuid.uuid4()), str(uuid.uuid4())
    source, destination = tmp_path / "beamline", tmp_path / "facility"
    globus.add_collection(source_id, source, display_name="beamline")
    globus.add_collection(destination_id, destination, display_name="facility")
    return Site(globus, source_id, source, destination_id, destination, transfer_client(globus.client_credentials))
