"""The ingestor's view of SciCat: pyscicat, unmodified, behind a few operations with narrow errors.

pyscicat reports every non-2xx answer as one ``ScicatCommError`` carrying the server's JSON, so the status
is read back from that JSON (SciCat always includes ``statusCode``) to tell an operator's problem (400: the
payload, dead-lettered with the server's message) from SciCat's (5xx, timeouts, refused connections:
retried with back-off) and from an expired token (401: log in again, once). pyscicat is synchronous; the
handler calls these methods in a worker thread.

Datasets are found again by a deterministic keyword (``beamflow-scan:<scan id>``), never by remembering a
pid, so a redelivered or replayed event updates the dataset it made before instead of making a second one.
"""

from __future__ import annotations

import ast
import json
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote_plus

import requests
from beamflow.common.errors import PermanentError, TransientError
from pydantic import BaseModel, ConfigDict
from pyscicat.client import ScicatClient, ScicatCommError, ScicatLoginError
from pyscicat.model import Attachment, CreateDatasetOrigDatablockDto, Dataset

T = TypeVar("T")

#: Caption of the thumbnail attachment; also how a re-run finds the one it already added.
THUMBNAIL_CAPTION = "beamflow thumbnail"


class CatalogUnavailable(TransientError):
    """SciCat did not answer, timed out or failed on its side; retried with back-off."""


class CatalogRefused(PermanentError):
    """SciCat refused the payload (400); the message is the server's. Fix the metadata or config, replay."""


class CatalogLoginFailed(PermanentError):
    """SciCat refused the ingestor's credentials."""


class _TokenExpired(Exception):
    """A call was refused with 401: the caller's whole piece of work is repeated after a fresh login."""

    def __init__(self, operation: str) -> None:
        super().__init__(operation)
        self.operation = operation


class RawDatasetMissing(TransientError):
    """An archive or analysis result arrived before the raw dataset it belongs to; retried until it exists."""


def scan_keyword(scan_id: str) -> str:
    return f"beamflow-scan:{scan_id}"


def derived_keyword(scan_id: str, site: str) -> str:
    return f"beamflow-derived:{scan_id}:{site}"


class OrigDatablockPayload(CreateDatasetOrigDatablockDto):  # type: ignore[misc]  # pyscicat ships no types
    """pyscicat's model types ``chkAlg`` as an int; SciCat stores the algorithm's name, which we must send."""

    chkAlg: str | None = None


class DatasetPatch(BaseModel):
    """The fields a re-run or a later stage changes; PATCH leaves every other field as it is."""

    model_config = ConfigDict(extra="forbid")

    scientificMetadata: dict[str, Any] | None = None
    keywords: list[str] | None = None
    description: str | None = None
    owner: str | None = None
    ownerGroup: str | None = None
    ownerEmail: str | None = None
    contactEmail: str | None = None
    principalInvestigator: str | None = None
    accessGroups: list[str] | None = None
    proposalId: str | None = None
    inputDatasets: list[str] | None = None
    usedSoftware: list[str] | None = None
    jobParameters: dict[str, Any] | None = None


class Catalog:
    """One logged-in SciCat client, re-logged-in when its token expires. Thread-safe for the ingestor's use."""

    def __init__(self, base_url: str, username: str, password: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout_s = timeout_s
        self._client: ScicatClient | None = None
        self._lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------------

    def _login(self) -> ScicatClient:
        try:
            return ScicatClient(
                self.base_url,
                username=self._username,
                password=self._password,
                timeout_seconds=self._timeout_s,
            )
        except ScicatLoginError as exc:
            status = _status_in(str(exc))
            if status in (401, 403):
                raise CatalogLoginFailed(
                    f"SciCat at {self.base_url} refused the login of {self._username!r}: check catalog.username "
                    "and the password the config names (catalog.password), then replay the dead letters"
                ) from None
            raise CatalogUnavailable(
                f"SciCat at {self.base_url} could not log in (status {status}); retrying"
            ) from None
        except requests.RequestException as exc:
            raise CatalogUnavailable(
                f"SciCat at {self.base_url} is not reachable ({type(exc).__name__}); retrying"
            ) from exc

    def session(self, work: Callable[[Catalog], T]) -> T:
        """Run ``work`` (several calls); if the token turns out expired, log in again and run it all again.

        The whole piece of work is repeated, not only the refused call: SciCat answers a read with an
        expired token as if it came from nobody (only published datasets, no 401), so a "not found" seen
        before the 401 may be wrong, and acting on it would create a duplicate.
        """
        try:
            return work(self)
        except _TokenExpired:
            with self._lock:
                self._client = None
            try:
                return work(self)
            except _TokenExpired as again:
                raise CatalogLoginFailed(
                    f"SciCat at {self.base_url} refused {again.operation} (401) right after a fresh login of "
                    f"{self._username!r}: check that account's permissions"
                ) from None

    def _call(self, operation: str, call: Callable[[ScicatClient], T]) -> T:
        with self._lock:
            if self._client is None:
                self._client = self._login()
            client = self._client
        try:
            return call(client)
        except ScicatCommError as exc:
            status = _status_in(str(exc))
            if status == 401:
                raise _TokenExpired(operation) from None
            raise _classified(operation, status, str(exc), self.base_url) from None
        except requests.JSONDecodeError as exc:  # an HTML error page from a proxy in front of SciCat
            raise CatalogUnavailable(f"SciCat {operation}: an answer that is not JSON ({exc}); retrying") from None
        except requests.RequestException as exc:
            raise CatalogUnavailable(
                f"SciCat at {self.base_url} did not answer {operation} ({type(exc).__name__}); retrying"
            ) from exc

    # -- datasets -----------------------------------------------------------------------------------

    def find_by_keyword(self, keyword: str) -> dict[str, Any] | None:
        found = self._call("find dataset", lambda c: c.datasets_get_many({"keywords": keyword}))
        matches = [d for d in (found or []) if keyword in (d.get("keywords") or [])]
        if len(matches) > 1:
            # Never pick one silently: two datasets for one scan means something outside beamflow made one.
            pids = ", ".join(str(d.get("pid")) for d in matches)
            raise CatalogRefused(f"SciCat holds {len(matches)} datasets with keyword {keyword!r} ({pids}); keep one")
        return matches[0] if matches else None

    def get(self, pid: str) -> dict[str, Any] | None:
        return self._call("get dataset", lambda c: c.datasets_get_one(pid))  # type: ignore[no-any-return]

    def create(self, dataset: Dataset) -> str:
        return self._call("create dataset", lambda c: c.datasets_create(dataset))  # type: ignore[no-any-return]

    def patch(self, pid: str, patch: DatasetPatch) -> None:
        self._call("update dataset", lambda c: c.datasets_update(patch, pid))

    def origdatablocks(self, pid: str) -> list[dict[str, Any]]:
        found = self._call("list origdatablocks", lambda c: c.datasets_origdatablocks_get_one(pid))
        return list(found or [])

    def add_origdatablock(self, pid: str, block: OrigDatablockPayload) -> None:
        self._call("create origdatablock", lambda c: c.datasets_origdatablock_create(pid, block))

    def attachments(self, pid: str) -> list[dict[str, Any]]:
        # pyscicat 0.4.8 can add attachments but has no call to list them; its generic endpoint call does.
        found = self._call(
            "list attachments",
            lambda c: c._call_endpoint(cmd="get", endpoint=f"Datasets/{quote_plus(pid)}/attachments"),
        )
        return list(found or [])

    def add_attachment(self, attachment: Attachment) -> None:
        self._call("create attachment", lambda c: c.datasets_attachment_create(attachment))


def _status_in(message: str) -> int | None:
    """The ``statusCode`` SciCat put in its error body, as pyscicat passed it on (a dict's repr or JSON)."""
    match = re.search(r"""['"]statusCode['"]\s*:\s*(\d{3})""", message)
    return int(match.group(1)) if match else None


def _server_message(message: str) -> str:
    """The backend's ``message`` (a list of field problems, or a sentence) out of pyscicat's error text."""
    start = message.find("{")
    if start < 0:
        return message
    body = message[start:]
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(body)
        except (ValueError, SyntaxError):
            continue
        if isinstance(parsed, dict) and "message" in parsed:
            detail = parsed["message"]
            return "; ".join(map(str, detail)) if isinstance(detail, list) else str(detail)
    return body


def _classified(operation: str, status: int | None, message: str, base_url: str) -> Exception:
    detail = _server_message(message)
    if status in (400, 409, 422):
        return CatalogRefused(
            f"SciCat refused {operation} ({status}): {detail}. Fix the metadata or the beamline's catalog config "
            "and replay this dead letter"
        )
    if status == 403:
        return CatalogLoginFailed(
            f"SciCat at {base_url} does not let {operation} through (403): {detail}; check the account's groups"
        )
    return CatalogUnavailable(f"SciCat {operation} failed ({status or 'no status'}): {detail}; retrying")
