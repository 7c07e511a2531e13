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
from urllib.parse import parse_qs, urlsplit

from beamflow.common.standin_http import StandInHandler, StandInHTTPServer
from beamflow.scicat_local import errors
from beamflow.scicat_local.api import DEFAULT_PID_PREFIX, DEFAULT_TOKEN_TTL, Request, Response, SciCatApi
from beamflow.scicat_local.auth import User
from beamflow.scicat_local.store import CatalogStore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024  # the backend's JSON body limit
# The line the command prints to stderr once it listens, followed by the base URL; start_process waits for it.
LISTENING_MESSAGE = "local SciCat listening on "


class _Handler(StandInHandler):
    server: SciCatHTTPServer

    def serve(self) -> None:
        try:
            body = self._read_body()
        except errors.HttpError as exc:
            self._send(Response(exc.status, exc.body), close=True)
            return
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=dict(self.headers.items()),
            body=body,
        )
        try:
            response = self.server.api.handle(request)
        except Exception:
            log.exception("local SciCat failed on %s %s", self.command, parts.path)
            response = Response(500, {"statusCode": 500, "message": "Internal server error"})
        self._send(response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise errors.bad_request("chunked request bodies are not supported; send Content-Length")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise errors.payload_too_large()
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, response: Response, *, close: bool = False) -> None:
        self.send_json(response.status, response.body, close=close)


class SciCatHTTPServer(StandInHTTPServer):
    """The local SciCat's HTTP server: the stand-in server with the API it answers from."""

    def __init__(self, address: tuple[str, int], api: SciCatApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


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
    host = server.server_address[0]
    host = str(host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.port}/api/v3"
