"""The Globus Auth and Transfer endpoints globus-sdk 4.9 calls, answered HTTP-free by ``GlobusApi.handle``.

Paths and answers (Transfer paths under ``/v0.10``, what ``TransferClient`` puts after its base URL):

* ``POST /v2/oauth2/token`` -- client credentials grant, see ``auth`` (401 ``{"error": "invalid_client"}``).
* Every ``/v0.10`` path wants ``Authorization: Bearer <token for transfer.api.globus.org>``, else 401
  ``{"code": "AuthenticationFailed", "message", "request_id", "resource"}``. Errors always have that shape.
* ``GET /submission_id`` -> ``{"DATA_TYPE": "submission_id", "value": <uuid>}``.
* ``POST /transfer`` / ``POST /delete`` -> 202 ``{"DATA_TYPE": "transfer_result"|"delete_result", "code":
  "Accepted", "message", "request_id", "resource", "submission_id", "task_id", "task_link"}``; the same
  ``submission_id`` again -> 200 with ``"code": "Duplicate"`` and the first task's id. A bad document -> 400
  ``ClientError.BadRequest`` (``...NoTransferItems``/``...NoDeleteItems`` when ``DATA`` is empty), an unknown
  collection -> 404 ``EndpointNotFound`` (see ``documents``).
* ``GET /task/<id>`` -> the task document (see ``tasks``); an unknown (or another client's) task -> 404
  ``TaskNotFound``.
* ``POST /task/<id>/cancel`` -> ``{"DATA_TYPE": "result", "code": "Canceled", "message": "The task has been
  cancelled successfully.", ...}``; the task becomes ``FAILED`` with fatal error ``CANCELED``. A task that had
  already ended -> 200 ``"code": "TaskComplete"``, unchanged.
* ``GET /task/<id>/event_list?limit=&offset=`` -> ``{"DATA_TYPE": "event_list", "DATA": [event, ...] (newest
  first), "limit" (10 by default, at most 1000), "offset", "total", "length"}``.
* ``GET /task/<id>/successful_transfers?marker=`` and ``.../skipped_errors?marker=`` -> ``{"DATA_TYPE":
  "successful_transfers"|"skipped_errors", "marker", "next_marker", "DATA"}`` (1000 a page); while the task still
  runs -> 409 ``Conflict``.
* ``GET /task_list?limit=&offset=&filter=task_id:a,b/status:ACTIVE/type:TRANSFER`` -> ``{"DATA_TYPE":
  "task_list", "DATA", "limit", "offset", "total", "length"}``, newest first.
* ``GET /operation/endpoint/<id>/ls?path=&show_hidden=&limit=&offset=&orderby=&filter=`` -> ``{"DATA_TYPE":
  "file_list", "DATA": [file, ...], "endpoint", "path", "absolute_path", "rename_supported", "symlink_supported",
  "length", "total"}``. A missing path -> 404 ``ClientError.NotFound``; a file -> 502
  ``ExternalError.DirListingFailed.NotDirectory``; outside the collection or refused by the OS -> 403
  ``EndpointPermissionDenied``; a stalled collection -> 502 ``EndpointError``.
* ``GET /operation/endpoint/<id>/stat?path=`` -> one file document; missing -> 404 ``NotFound``.
* ``POST /operation/endpoint/<id>/mkdir`` (``{"DATA_TYPE": "mkdir", "path"}``) -> ``{"DATA_TYPE": "mkdir_result",
  "code": "DirectoryCreated", ...}``; existing -> 502 ``ExternalError.MkdirFailed.Exists``.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import re
import threading
import uuid
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

from beamflow.common.standin_http import Request, Response
from beamflow.globus_local.auth import DEFAULT_TOKEN_TTL, TOKEN_PATH, TRANSFER_RESOURCE_SERVER, GlobusAuth
from beamflow.globus_local.documents import endpoint_not_found, parse_delete, parse_transfer
from beamflow.globus_local.records import Task
from beamflow.globus_local.storage import (
    Collection,
    InvalidPath,
    PathNotAllowed,
    file_document,
    globus_path,
    normalize_collection_id,
    path_parts,
)
from beamflow.globus_local.tasks import DEFAULT_RETRY_INTERVAL, TaskEngine
from beamflow.globus_local.wire import TransferFault, bad_request, new_request_id

API_PREFIX = "/v0.10"
MAX_LS_ITEMS = 100_000
MAX_PAGE = 1000
DEFAULT_PAGE = 10
MARKER_PAGE = 1000
_LS_ORDER_FIELDS = ("name", "type", "size", "last_modified", "permissions", "user", "group")

Handler = Callable[[Request, "re.Match[str]", str], Response]


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value for {name!r}: {raw!r} is not an integer") from None
    if value < 0 or value > maximum:
        raise bad_request(f"Invalid value for {name!r}: must be between 0 and {maximum}")
    return value


def _page(request: Request, rows: list[dict[str, Any]], data_type: str) -> dict[str, Any]:
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 2**31)
    shown = rows[offset : offset + limit]
    return {
        "DATA_TYPE": data_type,
        "DATA": shown,
        "limit": limit,
        "offset": offset,
        "total": len(rows),
        "length": len(shown),
    }


def _marker_page(request: Request, rows: list[dict[str, Any]], data_type: str) -> dict[str, Any]:
    marker = _int_param(request, "marker", 0, 2**31)
    shown = rows[marker : marker + MARKER_PAGE]
    following = marker + len(shown)
    return {
        "DATA_TYPE": data_type,
        "marker": marker,
        "next_marker": following if following < len(rows) else None,
        "DATA": shown,
    }


def _filter_clauses(text: str | None, allowed: tuple[str, ...]) -> list[tuple[str, str]]:
    if not text:
        return []
    clauses: list[tuple[str, str]] = []
    for clause in text.split("/"):
        name, sep, value = clause.partition(":")
        if not sep or name not in allowed:
            raise bad_request(f"Invalid filter clause {clause!r}")
        clauses.append((name, value))
    return clauses


def _ls_match(entry: dict[str, Any], clauses: list[tuple[str, str]]) -> bool:
    for name, value in clauses:
        if name == "type" and entry["type"] not in value.split(","):
            return False
        if name == "name":
            for prefix, negate, glob in (
                ("!~", True, True),
                ("!=", True, False),
                ("~", False, True),
                ("=", False, False),
            ):
                if value.startswith(prefix):
                    pattern = value[len(prefix) :]
                    hit = fnmatch.fnmatchcase(entry["name"], pattern) if glob else entry["name"] == pattern
                    if hit == negate:
                        return False
                    break
            else:
                if entry["name"] != value:
                    return False
    return True


def _ls_order(entries: list[dict[str, Any]], orderby: str | None) -> list[dict[str, Any]]:
    keys: list[tuple[str, bool]] = []
    for part in (orderby or "").split(","):
        words = part.split()
        if not words:
            continue
        if words[0] not in _LS_ORDER_FIELDS or len(words) > 2 or (len(words) == 2 and words[1] not in ("ASC", "DESC")):
            raise bad_request(f"Invalid orderby {part.strip()!r}")
        keys.append((words[0], len(words) == 2 and words[1] == "DESC"))
    ordered = sorted(entries, key=lambda entry: entry["name"])
    for key, descending in reversed(keys):
        ordered.sort(key=itemgetter(key), reverse=descending)
    return ordered


class GlobusApi:
    """The stand-in's core: Globus Auth's token endpoint and the Transfer API over local collections.

    Thread-safe: the HTTP server calls ``handle`` from many threads. Test hooks: ``add_collection``,
    ``add_client``, ``expire_tokens``, ``stall``/``unstall``, ``task``, ``wait_idle``, ``calls``.
    """

    def __init__(self, *, token_ttl: float = DEFAULT_TOKEN_TTL, retry_interval: float = DEFAULT_RETRY_INTERVAL) -> None:
        self.auth = GlobusAuth(token_ttl=token_ttl)
        self.engine = TaskEngine(retry_interval=retry_interval)
        # (method, path, status) of the latest requests, for tests to count calls.
        self.calls: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=10_000)
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/submission_id"), self._submission_id),
            ("POST", re.compile(r"/transfer"), self._submit_transfer),
            ("POST", re.compile(r"/delete"), self._submit_delete),
            ("GET", re.compile(r"/task_list"), self._task_list),
            ("GET", re.compile(r"/task/(?P<task>[^/]+)"), self._get_task),
            ("POST", re.compile(r"/task/(?P<task>[^/]+)/cancel"), self._cancel_task),
            ("GET", re.compile(r"/task/(?P<task>[^/]+)/event_list"), self._event_list),
            ("GET", re.compile(r"/task/(?P<task>[^/]+)/successful_transfers"), self._successful_transfers),
            ("GET", re.compile(r"/task/(?P<task>[^/]+)/skipped_errors"), self._skipped_errors),
            ("GET", re.compile(r"/operation/endpoint/(?P<endpoint>[^/]+)/ls"), self._ls),
            ("GET", re.compile(r"/operation/endpoint/(?P<endpoint>[^/]+)/stat"), self._stat),
            ("POST", re.compile(r"/operation/endpoint/(?P<endpoint>[^/]+)/mkdir"), self._mkdir),
        ]

    # -- test hooks --

    def add_collection(
        self, collection_id: uuid.UUID | str, local_root: Path | str, *, writable: bool = True, display_name: str = ""
    ) -> Collection:
        """Expose ``local_root`` as the collection ``collection_id``: its Globus path ``/a/b`` is ``local_root/a/b``."""
        root = Path(local_root).absolute()
        root.mkdir(parents=True, exist_ok=True)
        collection = Collection(normalize_collection_id(collection_id), root, writable, display_name)
        with self._lock:
            self._collections[collection.id] = collection
        return collection

    def remove_collection(self, collection_id: uuid.UUID | str) -> None:
        with self._lock:
            self._collections.pop(normalize_collection_id(collection_id), None)

    def collection(self, collection_id: uuid.UUID | str) -> Collection:
        """The collection with this id; ``TransferFault`` 404 ``EndpointNotFound`` when there is none."""
        try:
            key = normalize_collection_id(collection_id)
        except ValueError:
            raise endpoint_not_found(str(collection_id)) from None
        with self._lock:
            found = self._collections.get(key)
        if found is None:
            raise endpoint_not_found(key)
        return found

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.auth.add_client(client_id, client_secret)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working; clients get 401 until they fetch a new one."""
        self.auth.expire_tokens()

    def stall(
        self,
        collection_id: uuid.UUID | str,
        *,
        code: str = "CONNECT_FAILED",
        description: str = "Could not connect to the endpoint",
        inactive: bool = False,
    ) -> None:
        """Tasks touching the collection stay running, repeating an error event, until unstalled/cancelled/expired."""
        self.engine.stall(normalize_collection_id(collection_id), code=code, description=description, inactive=inactive)

    def unstall(self, collection_id: uuid.UUID | str | None = None) -> None:
        """Let stalled tasks go on (those of one collection, or all)."""
        self.engine.unstall(None if collection_id is None else normalize_collection_id(collection_id))

    def task(self, task_id: str) -> Task | None:
        return self.engine.get(str(task_id))

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no task runs; ``False`` if some still ran after ``timeout`` seconds."""
        return self.engine.wait_idle(timeout)

    def close(self) -> None:
        """Stop the task threads (tasks keep their state)."""
        self.engine.close()

    # -- dispatch --

    def handle(self, request: Request) -> Response:
        response = self._route(request)
        self.calls.append((request.method, request.path, response.status))
        return response

    def _route(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == TOKEN_PATH:
            if request.method != "POST":
                return Response(405, {"error": "invalid_request", "error_description": "Method not allowed"})
            return self.auth.token(request)
        try:
            if not path.startswith(API_PREFIX + "/"):
                raise TransferFault(404, "ClientError.NotFound", f"No such resource: {path}")
            owner = self._authenticate(request)
            rest = path[len(API_PREFIX) :].rstrip("/")
            methods_seen = False
            for method, pattern, handler in self._routes:
                match = pattern.fullmatch(rest)
                if match is None:
                    continue
                methods_seen = True
                if method == request.method:
                    return handler(request, match, owner)
            if methods_seen:
                raise TransferFault(405, "ClientError.MethodNotAllowed", f"{request.method} is not allowed on {path}")
            raise TransferFault(404, "ClientError.NotFound", f"No such resource: {path}")
        except TransferFault as fault:
            return fault.response(fault.resource or path)

    def _authenticate(self, request: Request) -> str:
        scheme, _, token = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TransferFault(401, "AuthenticationFailed", "No Authorization header with a Bearer token")
        grant = self.auth.grant_for(token.strip(), TRANSFER_RESOURCE_SERVER)
        if grant is None:
            raise TransferFault(401, "AuthenticationFailed", "Token is not active")
        return grant.client_id

    @staticmethod
    def _json_body(request: Request) -> object:
        try:
            return json.loads(request.body or b"null")
        except ValueError:
            raise bad_request("The request body is not valid JSON") from None

    # -- submission --

    def _submission_id(self, request: Request, match: re.Match[str], owner: str) -> Response:
        return Response(200, {"DATA_TYPE": "submission_id", "value": str(uuid.uuid4())})

    def _submit(self, kind: str, spec_task: tuple[Task, bool], resource: str) -> Response:
        task, duplicate = spec_task
        noun = "transfer" if kind == "transfer" else "delete"
        if duplicate:
            code, status = "Duplicate", 200
            message = f"A {noun} with submission id '{task.submission_id}' was already submitted as task {task.task_id}"
        else:
            code, status = "Accepted", 202
            message = f"The {noun} has been accepted and a task has been created and queued for execution"
        body = {
            "DATA_TYPE": f"{kind}_result",
            "code": code,
            "message": message,
            "request_id": new_request_id(),
            "resource": resource,
            "submission_id": task.submission_id,
            "task_id": task.task_id,
            "task_link": {
                "DATA_TYPE": "link",
                "href": f"{API_PREFIX}/task/{task.task_id}?format=json",
                "rel": "related",
                "resource": "task",
                "title": "related task",
            },
        }
        return Response(status, body)

    def _submit_transfer(self, request: Request, match: re.Match[str], owner: str) -> Response:
        spec = parse_transfer(self._json_body(request), self.collection)
        return self._submit("transfer", self.engine.submit(spec, owner), request.path)

    def _submit_delete(self, request: Request, match: re.Match[str], owner: str) -> Response:
        spec = parse_delete(self._json_body(request), self.collection)
        return self._submit("delete", self.engine.submit(spec, owner), request.path)

    # -- tasks --

    def _owned_task(self, task_id: str, owner: str) -> Task:
        task = self.engine.get(task_id)
        if task is None or task.owner_id != owner:
            raise TransferFault(404, "TaskNotFound", f"Task {task_id} not found")
        return task

    def _get_task(self, request: Request, match: re.Match[str], owner: str) -> Response:
        return Response(200, self.engine.document(self._owned_task(match["task"], owner)))

    def _cancel_task(self, request: Request, match: re.Match[str], owner: str) -> Response:
        task = self._owned_task(match["task"], owner)
        if self.engine.cancel(task):
            code, message = "Canceled", "The task has been cancelled successfully."
        else:
            code, message = "TaskComplete", "The task completed before the cancel request was processed."
        body = {
            "DATA_TYPE": "result",
            "code": code,
            "message": message,
            "resource": f"/task/{task.task_id}/cancel",
            "request_id": new_request_id(),
        }
        return Response(200, body)

    def _event_list(self, request: Request, match: re.Match[str], owner: str) -> Response:
        task = self._owned_task(match["task"], owner)
        return Response(200, _page(request, self.engine.events(task), "event_list"))

    def _finished_task(self, match: re.Match[str], owner: str) -> Task:
        task = self._owned_task(match["task"], owner)
        if task.running:
            raise TransferFault(409, "Conflict", f"Task {task.task_id} has not completed yet")
        return task

    def _successful_transfers(self, request: Request, match: re.Match[str], owner: str) -> Response:
        task = self._finished_task(match, owner)
        return Response(200, _marker_page(request, self.engine.successful_transfers(task), "successful_transfers"))

    def _skipped_errors(self, request: Request, match: re.Match[str], owner: str) -> Response:
        task = self._finished_task(match, owner)
        return Response(200, _marker_page(request, self.engine.skipped_errors(task), "skipped_errors"))

    def _task_list(self, request: Request, match: re.Match[str], owner: str) -> Response:
        clauses = _filter_clauses(request.param("filter"), ("task_id", "status", "type", "label"))
        documents: list[dict[str, Any]] = []
        for task in sorted(self.engine.tasks(), key=lambda task: task.request_time, reverse=True):
            if task.owner_id != owner:
                continue
            document = self.engine.document(task)
            if all(str(document.get(name)) in value.split(",") for name, value in clauses):
                documents.append(document)
        return Response(200, _page(request, documents, "task_list"))

    # -- file operations --

    def _operation_target(self, match: re.Match[str], path: str, operation: str) -> tuple[Collection, Path]:
        collection = self.collection(match["endpoint"])
        if collection.id in self.engine.stalled_collections():
            raise TransferFault(502, "EndpointError", f"Could not connect to the endpoint ({operation})")
        try:
            return collection, collection.local_path(path)
        except InvalidPath as exc:
            raise bad_request(f"Invalid path: {exc}") from None
        except PathNotAllowed:
            raise self._denied(collection, path, operation) from None

    @staticmethod
    def _denied(collection: Collection, path: str, operation: str) -> TransferFault:
        message = (
            f"Denied by endpoint, Error ({operation})\nEndpoint: {collection.name} ({collection.id})\n"
            f"Server: 127.0.0.1\nCommand: {operation.upper()} {path}\nMessage: Path not allowed\n"
        )
        return TransferFault(403, "EndpointPermissionDenied", message)

    @staticmethod
    def _not_found_message(collection: Collection, path: str, operation: str) -> str:
        return (
            f"Path not found, Error ({operation})\nEndpoint: {collection.name} ({collection.id})\n"
            f"Server: 127.0.0.1\nMessage: No such file or directory\n---\nDetails: Error: '{path}' not found\n"
        )

    def _ls(self, request: Request, match: re.Match[str], owner: str) -> Response:
        path = request.param("path") or "/~/"
        collection, local = self._operation_target(match, path, "list")
        show_hidden = (request.param("show_hidden") or "1").lower() not in ("0", "false")
        limit = _int_param(request, "limit", MAX_LS_ITEMS, MAX_LS_ITEMS)
        offset = _int_param(request, "offset", 0, 2**31)
        clauses = _filter_clauses(request.param("filter"), ("name", "type"))
        try:
            if not local.is_dir():
                if local.exists():
                    message = f"Directory listing failed: '{path}' is not a directory"
                    raise TransferFault(502, "ExternalError.DirListingFailed.NotDirectory", message)
                raise TransferFault(404, "ClientError.NotFound", self._not_found_message(collection, path, "list"))
            children = list(local.iterdir())
            entries = [file_document(child) for child in children if show_hidden or not child.name.startswith(".")]
        except PermissionError:
            raise self._denied(collection, path, "list") from None
        except FileNotFoundError:
            raise TransferFault(
                404, "ClientError.NotFound", self._not_found_message(collection, path, "list")
            ) from None
        entries = _ls_order([entry for entry in entries if _ls_match(entry, clauses)], request.param("orderby"))
        shown = entries[offset : offset + limit]
        listed = globus_path(path_parts(path), directory=True)
        body = {
            "DATA_TYPE": "file_list",
            "DATA": shown,
            "endpoint": collection.id,
            "path": listed,
            "absolute_path": listed,
            "rename_supported": True,
            "symlink_supported": False,
            "length": len(shown),
            "total": len(entries),
        }
        return Response(200, body)

    def _stat(self, request: Request, match: re.Match[str], owner: str) -> Response:
        path = request.param("path")
        if not path:
            raise bad_request("Missing required query parameter 'path'")
        collection, local = self._operation_target(match, path, "stat")
        try:
            document = file_document(local, name=local.name if path_parts(path) else "/")
        except FileNotFoundError:
            raise TransferFault(404, "NotFound", self._not_found_message(collection, path, "stat")) from None
        except PermissionError:
            raise self._denied(collection, path, "stat") from None
        return Response(200, document)

    def _mkdir(self, request: Request, match: re.Match[str], owner: str) -> Response:
        body = self._json_body(request)
        if not isinstance(body, dict) or body.get("DATA_TYPE", "mkdir") != "mkdir":
            raise bad_request("The request body must be a mkdir document")
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise bad_request("Missing required field 'path'")
        collection, local = self._operation_target(match, path, "mkdir")
        if not collection.writable:
            raise self._denied(collection, path, "mkdir")
        try:
            local.mkdir()
        except FileExistsError:
            message = f"Path already exists, Error (mkdir)\nEndpoint: {collection.name} ({collection.id})\n"
            raise TransferFault(502, "ExternalError.MkdirFailed.Exists", message) from None
        except PermissionError:
            raise self._denied(collection, path, "mkdir") from None
        except OSError as exc:
            message = f"Directory creation failed, Error (mkdir)\nMessage: {exc.strerror or exc}\n"
            raise TransferFault(502, "ExternalError.MkdirFailed", message) from None
        body = {
            "DATA_TYPE": "mkdir_result",
            "code": "DirectoryCreated",
            "message": "The directory was created successfully",
            "request_id": new_request_id(),
            "resource": request.path,
        }
        return Response(200, body)
