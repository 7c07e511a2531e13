"""The endpoints of the local SciCat: routing, authentication and what each call does, without HTTP plumbing.

Routes live under ``/api/v3`` and, as in Express, match case-insensitively (``Datasets`` = ``datasets``).
A pid is one URL-encoded path segment (``20.500.12269%2F<uuid>``, pyscicat's ``quote_plus``); the raw slash
form (``Datasets/20.500.12269/<uuid>``) is accepted too, which the real backend does not do.

Authentication follows the backend: a token comes from the ``Authorization: Bearer`` header or, without a
header, the ``access_token`` query parameter. A missing, unknown or expired token does *not* fail a read: the
backend then serves the request anonymously, and an anonymous list query has its ``where`` replaced by
``{"isPublished": true}`` (an anonymous read of one private dataset is 403). Writes need a user and answer
401 without one. Every logged-in user may read and write every dataset (group rules are not modelled).
``POST auth/login`` (also ``Users/login``) and ``GET health`` need no token.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from beamflow.common.standin_http import Request, Response
from beamflow.scicat_local import errors
from beamflow.scicat_local.auth import User
from beamflow.scicat_local.errors import HttpError
from beamflow.scicat_local.filters import FilterError, Query, apply_query, fullquery_where, parse_filter, parse_order
from beamflow.scicat_local.models import (
    AttachmentCreate,
    DerivedDatasetCreate,
    DerivedDatasetPatch,
    OrigDatablockCreate,
    RawDatasetCreate,
    RawDatasetPatch,
    parse_iso_datetime,
    validate_body,
)
from beamflow.scicat_local.store import CatalogStore, Doc, DuplicateKey

log = logging.getLogger(__name__)

API_PREFIX = "/api/v3"
DEFAULT_PID_PREFIX = "20.500.12269"
DEFAULT_TOKEN_TTL = 3600.0
_DATASET_DATES = ("creationTime", "startTime", "endTime")
# Names under Datasets/ that are routes, not pids (as the backend declares them before /:pid).
_DATASET_ACTIONS = {"count", "findone", "fullquery"}
_DATASET_CHILDREN = {"origdatablocks", "attachments", "thumbnail"}


def utc_iso(value: str) -> str:
    """A date as the backend returns it: UTC with milliseconds; a time without offset is local time."""
    moment = parse_iso_datetime(value)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # the backend reads offset-less times in the API server's zone
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class SciCatApi:
    """Answers requests against a ``CatalogStore``; thread-safe (the store serialises its own access)."""

    def __init__(
        self,
        store: CatalogStore,
        users: Mapping[str, User],
        *,
        pid_prefix: str = DEFAULT_PID_PREFIX,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.users = dict(users)
        self.pid_prefix = pid_prefix
        self.token_ttl = token_ttl
        self.clock = clock

    # Entry point -----------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Route and answer one request; every refusal is a ``Response`` in the backend's error shape."""
        try:
            return self._route(request)
        except HttpError as exc:
            return Response(exc.status, exc.body)
        except FilterError as exc:
            return Response(400, errors.bad_request(str(exc)).body)

    def _route(self, request: Request) -> Response:
        method = request.method.upper()
        path = request.path
        if not path.lower().startswith(API_PREFIX + "/") and path.lower() != API_PREFIX:
            raise errors.no_route(method, path)
        segments = [s for s in path[len(API_PREFIX) :].split("/") if s]
        if not segments:
            raise errors.no_route(method, path)
        resource = segments[0].lower()
        rest = segments[1:]
        if resource == "health" and not rest and method == "GET":
            return Response(200, {"status": "ok"})
        if resource in ("auth", "users") and [s.lower() for s in rest] == ["login"] and method == "POST":
            return self.login(request)
        if resource == "datasets":
            return self._route_datasets(request, method, rest)
        raise errors.no_route(method, path)

    def _route_datasets(self, request: Request, method: str, rest: list[str]) -> Response:
        user = self.current_user(request)
        if not rest:
            if method == "POST":
                return self.create_dataset(user, self._json_body(request))
            if method == "GET":
                return self.list_datasets(user, request)
        elif len(rest) == 1 and rest[0].lower() in _DATASET_ACTIONS and method == "GET":
            return self.dataset_action(user, rest[0].lower(), request)
        else:
            child = rest[-1].lower() if len(rest) > 1 and rest[-1].lower() in _DATASET_CHILDREN else None
            pid = unquote("/".join(rest[:-1] if child else rest))
            if child is None:
                if method == "GET":
                    return Response(200, self._readable_dataset(user, pid))
                if method == "PATCH":
                    return self.patch_dataset(user, pid, self._json_body(request))
                if method == "DELETE":
                    return self.delete_dataset(user, pid)
            elif child == "origdatablocks":
                if method == "POST":
                    return self.create_origdatablock(user, pid, self._json_body(request))
                if method == "GET":
                    self._readable_dataset(user, pid)
                    return Response(200, self.store.origdatablocks(pid))
            elif child == "attachments":
                if method == "POST":
                    return self.create_attachment(user, pid, self._json_body(request))
                if method == "GET":
                    self._readable_dataset(user, pid)
                    return Response(200, self.store.attachments(pid))
            elif child == "thumbnail" and method == "GET":
                self._readable_dataset(user, pid)
                found = [a for a in self.store.attachments(pid) if a.get("thumbnail")]
                return Response(200, {"thumbnail": found[0]["thumbnail"]} if found else {})
        raise errors.no_route(method, request.path)

    # Authentication ----------------------------------------------------------------------------------------

    def login(self, request: Request) -> Response:
        """``POST auth/login {username, password}``: the backend's ``ReturnedAuthLoginDto``, status 201."""
        body = self._json_body(request)
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        user = self.users.get(username) if isinstance(username, str) else None
        if user is None or not isinstance(password, str) or not user.check_password(password):
            raise errors.unauthorized()
        now = self.clock()
        token = secrets.token_urlsafe(32)
        self.store.add_token(token, user.username, now, now + self.token_ttl)
        return Response(
            201,
            {
                "access_token": token,
                "id": token,
                "expires_in": self.token_ttl,
                "ttl": self.token_ttl,
                "created": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
                "userId": user.username,
                "user": user.public(),
            },
        )

    def current_user(self, request: Request) -> str | None:
        """The logged-in user's name, or None for an anonymous request (no, unknown or expired token)."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        header = headers.get("authorization", "").strip()
        token = header[7:].strip() if header.lower().startswith("bearer ") else header
        if not token:
            token = (request.query.get("access_token") or [""])[0]
        if not token:
            return None
        return self.store.token_user(token, self.clock())

    @staticmethod
    def _require_user(user: str | None) -> str:
        if user is None:
            raise errors.unauthorized()
        return user

    # Datasets -----------------------------------------------------------------------------------------------

    def create_dataset(self, user: str | None, body: Any) -> Response:
        """``POST Datasets``: validated against the raw or the derived DTO by ``type``; 201 with the dataset."""
        username = self._require_user(user)
        kind = body.get("type") if isinstance(body, dict) else None
        model = RawDatasetCreate if kind == "raw" else DerivedDatasetCreate
        dataset: Doc = validate_body(model, body).model_dump(exclude_unset=True)
        _normalise_dates(dataset, _DATASET_DATES)
        if not dataset.get("pid"):
            dataset["pid"] = f"{self.pid_prefix}/{uuid.uuid4()}"
        now = self._now_iso()
        # The schema's defaults, then who/when, as the backend's addCreatedByFields.
        doc: Doc = {
            "size": 0,
            "packedSize": 0,
            "numberOfFiles": 0,
            "numberOfFilesArchived": 0,
            "isPublished": False,
            "keywords": [],
            "accessGroups": [],
            "sharedWith": [],
            "techniques": [],
            "scientificMetadata": {},
            **{k: v for k, v in dataset.items() if v is not None},
            "createdBy": username,
            "updatedBy": username,
            "createdAt": now,
            "updatedAt": now,
        }
        try:
            self.store.insert_dataset(doc)
        except DuplicateKey:
            raise errors.conflict("A dataset with this this unique key already exists!") from None
        log.debug("dataset %s created by %s", doc["pid"], username)
        return Response(201, doc)

    def list_datasets(self, user: str | None, request: Request) -> Response:
        """``GET Datasets?filter=``; anonymous callers see published datasets only (see ``_for_caller``)."""
        query = _for_caller(user, parse_filter(_param(request, "filter")))
        keyword = query.where.get("keywords")
        # Finding a dataset by one keyword is the ingestor's lookup on every scan: narrow the candidates in
        # SQLite first (the full filter still decides), so it does not parse the whole catalog each time.
        candidates = self._visible(user, keyword if isinstance(keyword, str) else None)
        return Response(200, self._with_includes(apply_query(candidates, query), query))

    def dataset_action(self, user: str | None, action: str, request: Request) -> Response:
        """``Datasets/count``, ``Datasets/findOne`` and ``Datasets/fullquery``."""
        if action == "fullquery":
            fields = _json_param(request, "fields")
            limits = _json_param(request, "limits")
            query = Query(
                where=fullquery_where(fields),
                skip=int(limits.get("skip") or 0),
                limit=int(limits.get("limit") or 100),
                order=parse_order(limits.get("order")),
            )
            return Response(200, apply_query(self._visible(user), query))
        query = _for_caller(user, parse_filter(_param(request, "filter"), default_limit=None))
        found = apply_query(self._visible(user), Query(where=query.where, fields=query.fields))
        if action == "count":
            return Response(200, {"count": len(found)})
        # findOne answers null (an empty 200) when nothing matches, as Nest does for a null return.
        return Response(200, self._with_includes(found[:1], query)[0] if found else None)

    def _visible(self, user: str | None, keyword: str | None = None) -> list[Doc]:
        datasets = self.store.datasets() if keyword is None else self.store.datasets_with_keyword(keyword)
        return datasets if user is not None else [d for d in datasets if d.get("isPublished") is True]

    def _with_includes(self, datasets: list[Doc], query: Query) -> list[Doc]:
        for relation in query.include:
            if relation in ("origdatablocks", "attachments"):
                for doc in datasets:
                    doc[relation] = (
                        self.store.origdatablocks(doc["pid"])
                        if relation == "origdatablocks"
                        else self.store.attachments(doc["pid"])
                    )
        return datasets

    def _readable_dataset(self, user: str | None, pid: str) -> Doc:
        doc = self.store.get_dataset(pid)
        if doc is None:
            raise errors.not_found(f"dataset: {pid} not found")
        if user is None and doc.get("isPublished") is not True:
            raise errors.forbidden()
        return doc

    def patch_dataset(self, user: str | None, pid: str, body: Any) -> Response:
        """``PATCH Datasets/{pid}``: top-level fields are replaced (``$set``), ``scientificMetadata`` whole."""
        username = self._require_user(user)
        current = self.store.get_dataset(pid)
        if current is None:
            raise errors.not_found()
        model = RawDatasetPatch if current.get("type") == "raw" else DerivedDatasetPatch
        changes: Doc = validate_body(model, body).model_dump(exclude_unset=True)
        _normalise_dates(changes, _DATASET_DATES)
        now = self._now_iso()

        def apply(doc: Doc) -> Doc:
            return {**doc, **changes, "updatedBy": username, "updatedAt": now}

        updated = self.store.update_dataset(pid, apply)
        if updated is None:  # deleted between the read and the update
            raise errors.not_found()
        return Response(200, updated)

    def delete_dataset(self, user: str | None, pid: str) -> Response:
        """``DELETE Datasets/{pid}``: 200 with the removed dataset (its datablocks and attachments stay)."""
        self._require_user(user)
        removed = self.store.delete_dataset(pid)
        if removed is None:
            raise errors.not_found()
        return Response(200, removed)

    # Origdatablocks and attachments -----------------------------------------------------------------------

    def create_origdatablock(self, user: str | None, pid: str, body: Any) -> Response:
        """``POST Datasets/{pid}/origdatablocks``: the block takes its owner from the dataset, and the
        dataset's ``size`` and ``numberOfFiles`` grow by the block's, as the backend does."""
        username = self._require_user(user)
        dataset = self.store.get_dataset(pid)
        if dataset is None:
            raise errors.not_found(f"dataset: {pid} not found")
        block: Doc = validate_body(OrigDatablockCreate, body).model_dump(exclude_unset=True)
        for entry in block["dataFileList"]:
            _normalise_dates(entry, ("time",))
        block_id = str(uuid.uuid4())
        now = self._now_iso()
        doc: Doc = {
            "_id": block_id,
            "id": block_id,
            "datasetId": pid,
            "ownerGroup": dataset.get("ownerGroup"),
            "accessGroups": dataset.get("accessGroups", []),
            **({"instrumentGroup": dataset["instrumentGroup"]} if "instrumentGroup" in dataset else {}),
            **{k: v for k, v in block.items() if v is not None},
            "createdBy": username,
            "updatedBy": username,
            "createdAt": now,
            "updatedAt": now,
        }

        def grow(current: Doc) -> Doc:
            return {
                **current,
                "size": (current.get("size") or 0) + block["size"],
                "numberOfFiles": (current.get("numberOfFiles") or 0) + len(block["dataFileList"]),
                "updatedBy": username,
                "updatedAt": now,
            }

        if self.store.insert_origdatablock(doc, grow) is None:
            raise errors.not_found(f"dataset: {pid} not found")
        return Response(201, doc)

    def create_attachment(self, user: str | None, pid: str, body: Any) -> Response:
        """``POST Datasets/{pid}/attachments``: ``datasetId`` and ``ownerGroup`` come from the dataset."""
        username = self._require_user(user)
        dataset = self.store.get_dataset(pid)
        if dataset is None:
            raise errors.not_found(f"dataset: {pid} not found")
        attachment: Doc = validate_body(AttachmentCreate, body).model_dump(exclude_unset=True)
        attachment_id = attachment.get("id") or str(uuid.uuid4())
        now = self._now_iso()
        doc: Doc = {
            "isPublished": False,
            **{k: v for k, v in attachment.items() if v is not None},
            "_id": attachment_id,
            "id": attachment_id,
            "datasetId": pid,
            "ownerGroup": dataset.get("ownerGroup"),
            "createdBy": username,
            "updatedBy": username,
            "createdAt": now,
            "updatedAt": now,
        }
        try:
            self.store.insert_attachment(doc)
        except DuplicateKey:  # an id the client chose twice
            raise errors.conflict("An attachment with this id already exists!") from None
        return Response(201, doc)

    # Helpers -------------------------------------------------------------------------------------------------

    def _now_iso(self) -> str:
        moment = datetime.fromtimestamp(self.clock(), UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    @staticmethod
    def _json_body(request: Request) -> Any:
        if not request.body.strip():
            return {}
        try:
            return json.loads(request.body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # body-parser's answer to malformed JSON.
            raise errors.bad_request(f"Unexpected token in JSON: {exc}") from None


def _for_caller(user: str | None, query: Query) -> Query:
    """The backend's ``updateMergedFiltersForList`` for an anonymous caller *replaces* ``where`` by
    ``{"isPublished": true}``: such a caller gets every published dataset, whatever it asked for. A client
    whose token silently expired must therefore never trust a find-by-key answer without checking the key."""
    if user is not None:
        return query
    return replace(query, where={"isPublished": True})


def _param(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def _json_param(request: Request, name: str) -> dict[str, Any]:
    raw = _param(request, name)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FilterError(f"{name} is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise FilterError(f"{name} must be a JSON object")
    return value


def _normalise_dates(doc: Doc, names: tuple[str, ...]) -> None:
    for name in names:
        if isinstance(doc.get(name), str):
            doc[name] = utc_iso(doc[name])
