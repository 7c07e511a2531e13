"""The SFAPI stand-in's HTTP server, on the standard library (``http.server.ThreadingHTTPServer``).

The same shape as the local SciCat's server (``beamflow.scicat_local.server``): one thread per connection,
HTTP/1.1 keep-alive, JSON out; the request is handed to ``SfApi.handle`` as a plain ``Request``. Stopping closes
the listening socket and every open connection. One server answers both the token URL (``/c2id/token``) and the
API (``/api/v1.2/...``), which NERSC serves from two hosts. Request logs go to ``logging`` at debug level.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

from beamflow.common.standin_http import StandInHandler, StandInHTTPServer
from beamflow.sfapi_local.api import API_PREFIX, TOKEN_PATH, Request, Response, SfApi

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
LISTENING_MESSAGE = "local SFAPI listening on "


class _Handler(StandInHandler):
    server: SfApiHTTPServer

    def serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length > MAX_BODY_BYTES:
            self._send(Response(413, {"detail": "request body too large or chunked"}), close=True)
            return
        body = self.rfile.read(length) if length > 0 else b""
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
            log.exception("local SFAPI failed on %s %s", self.command, parts.path)
            response = Response(500, {"detail": "Internal Server Error"})
        self._send(response)

    def _send(self, response: Response, *, close: bool = False) -> None:
        # The SFAPI always answers a JSON body, "null" included.
        self.send_json(
            response.status,
            response.body,
            headers=response.headers,
            close=close,
            content_type="application/json",
            empty_when_none=False,
        )


class SfApiHTTPServer(StandInHTTPServer):
    """The SFAPI stand-in's HTTP server: the stand-in server with the API it answers from."""

    def __init__(self, address: tuple[str, int], api: SfApi) -> None:
        self.api = api
        super().__init__(address, _Handler)
        self.api.verifier.audiences.add(self.token_url)

    @property
    def api_base_url(self) -> str:
        """What sfapi-client takes as ``api_base_url`` (NERSC: ``https://api.nersc.gov/api/v1.2``)."""
        return self.root_url + API_PREFIX

    @property
    def token_url(self) -> str:
        """What sfapi-client takes as ``token_url`` (NERSC: ``https://oidc.nersc.gov/c2id/token``)."""
        return self.root_url + TOKEN_PATH


def make_server(api: SfApi, *, host: str = "127.0.0.1", port: int = 0) -> SfApiHTTPServer:
    """A bound, listening (not yet serving) SFAPI stand-in; call ``serve_forever`` to answer requests."""
    return SfApiHTTPServer((host, port), api)
