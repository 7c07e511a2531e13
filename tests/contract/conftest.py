"""Which SciCat the contract tests talk to.

By default a local SciCat (``beamflow.scicat_local.LocalSciCat``) is started for the session on a temporary
database, with a user of its own. To hold the same tests against a real SciCat backend, set:

    BEAMFLOW_SCICAT_URL          the /api/v3 base URL, e.g. https://scicat.example.org/api/v3
    BEAMFLOW_SCICAT_USERNAME     an account allowed to create datasets (an ingestor functional account)
    BEAMFLOW_SCICAT_PASSWORD
    BEAMFLOW_SCICAT_OWNER_GROUP  optional: the ownerGroup of the datasets created (default "beamflow")

Against a real backend the tests leave their datasets behind: every name starts with "beamflow-contract-".
Tests that need the local server (forcing token expiry, checking its exact error bodies) use the
``local_scicat`` fixture, which skips them when BEAMFLOW_SCICAT_URL is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from beamflow.scicat_local import LocalSciCat
from pyscicat.client import ScicatClient, from_credentials

URL_ENV = "BEAMFLOW_SCICAT_URL"


@dataclass(frozen=True)
class SciCatTarget:
    """Where the tests send their calls, and as whom."""

    url: str
    username: str
    password: str
    owner_group: str
    local: LocalSciCat | None


@pytest.fixture(scope="session")
def scicat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SciCatTarget]:
    url = os.environ.get(URL_ENV)
    owner_group = os.environ.get("BEAMFLOW_SCICAT_OWNER_GROUP", "beamflow")
    if url:
        username = os.environ.get("BEAMFLOW_SCICAT_USERNAME")
        password = os.environ.get("BEAMFLOW_SCICAT_PASSWORD")
        if not username or not password:
            pytest.fail(f"{URL_ENV} is set: set BEAMFLOW_SCICAT_USERNAME and BEAMFLOW_SCICAT_PASSWORD too")
        yield SciCatTarget(url.rstrip("/"), username, password, owner_group, None)
        return
    with LocalSciCat(tmp_path_factory.mktemp("scicat") / "catalog.db") as local:
        yield SciCatTarget(local.url, local.username, local.password, owner_group, local)


@pytest.fixture
def local_scicat(scicat: SciCatTarget) -> LocalSciCat:
    """The session's local SciCat; skips the test when the tests run against a real backend."""
    if scicat.local is None:
        pytest.skip(f"needs the local SciCat ({URL_ENV} points at a real backend)")
    return scicat.local


@pytest.fixture(scope="session")
def client(scicat: SciCatTarget) -> ScicatClient:
    """A logged-in pyscicat client (unmodified), shared by the session."""
    return from_credentials(scicat.url, scicat.username, scicat.password)


@pytest.fixture
def unique() -> str:
    """A name no other test run uses, so tests find exactly their own datasets."""
    return f"beamflow-contract-{uuid.uuid4().hex[:16]}"
