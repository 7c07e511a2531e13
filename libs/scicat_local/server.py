"""The local SciCat's HTTP server, on the standard library (``http.server.ThreadingHTTPServer``).

One thread per connection, HTTP/1.1 with keep-alive, JSON in and out. Stopping closes the listening socket
*and* every open connection, so a stopped server refuses connections at once (a kept-alive client is not
served by a lingering handler thread); the catalog is in SQLite, so a new server on the same file and port
serves the same data. Request logs go to ``logging`` at debug level: stdout and stderr stay quiet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from beamflow.common.standin_http import Response, StandInHandler, StandInHTTPServer
from beamflow.scicat_local import errors
from beamflow.scicat_local.api import API_PREFIX, DEFAULT_PID_PREFIX, DEFAULT_TOKEN_TTL, SciCatApi
from beamflow.scicat_local.auth import User
from beamflow.scicat_local.store import CatalogStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # the backend's JSON body limit
# The line the command prints to stderr once it listens, followed by the base URL; start_process waits for it.
LISTENING_MESSAGE = "local SciCat listening on "


class _Handler(StandInHandler):
    max_body_bytes = MAX_BODY_BYTES
    # Nest sends no body at all for a handler returning null.
    empty_when_none = True
    service_name = "local SciCat"
    failure_log = log

    def body_refusal(self, *, chunked: bool) -> Response:
        if chunked:
            refusal = errors.bad_request("chunked request bodies are not supported; send Content-Length")
        else:
            refusal = errors.payload_too_large()
        return Response(refusal.status, refusal.body)

    def internal_error(self, path: str) -> Response:
        return Response(500, {"statusCode": 500, "message": "Internal server error"})


class SciCatHTTPServer(StandInHTTPServer[SciCatApi]):
    """The local SciCat's HTTP server: the stand-in server with the API it answers from."""

    handler_class = _Handler


def make_server(
    db_path: Path,
    users: Mapping[str, User],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    pid_prefix: str = DEFAULT_PID_PREFIX,
    token_ttl: float = DEFAULT_TOKEN_TTL,
) -> SciCatHTTPServer:
    """A bound, listening (not yet serving) local SciCat; call ``serve_forever`` to answer requests."""
    store = CatalogStore(db_path)
    api = SciCatApi(store, users, pid_prefix=pid_prefix, token_ttl=token_ttl)
    try:
        return SciCatHTTPServer((host, port), api)
    except OSError:
        store.close()
        raise


def base_url(server: SciCatHTTPServer) -> str:
    """The ``/api/v3`` URL pyscicat takes as ``base_url``."""
    return server.root_url + API_PREFIX
