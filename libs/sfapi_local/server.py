"""The SFAPI stand-in's HTTP server, on the standard library (``http.server.ThreadingHTTPServer``).

The same shape as the local SciCat's server (``beamflow.scicat_local.server``): one thread per connection,
HTTP/1.1 keep-alive, JSON out; the request is handed to ``SfApi.handle`` as a plain ``Request``. Stopping closes
the listening socket and every open connection. One server answers both the token URL (``/c2id/token``) and the
API (``/api/v1.2/...``), which NERSC serves from two hosts. Request logs go to ``logging`` at debug level.
"""

from __future__ import annotations

import logging

from beamflow.common.standin_http import Response, StandInHandler, StandInHTTPServer
from beamflow.sfapi_local.api import API_PREFIX, TOKEN_PATH, SfApi

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
LISTENING_MESSAGE = "local SFAPI listening on "


class _Handler(StandInHandler):
    max_body_bytes = MAX_BODY_BYTES
    content_type = "application/json"
    # The SFAPI always answers a JSON body, "null" included.
    empty_when_none = False
    service_name = "local SFAPI"
    failure_log = log

    def body_refusal(self, *, chunked: bool) -> Response:
        return Response(413, {"detail": "request body too large or chunked"})

    def internal_error(self, path: str) -> Response:
        return Response(500, {"detail": "Internal Server Error"})


class SfApiHTTPServer(StandInHTTPServer[SfApi]):
    """The SFAPI stand-in's HTTP server: the stand-in server with the API it answers from."""

    handler_class = _Handler

    def __init__(self, address: tuple[str, int], api: SfApi) -> None:
        super().__init__(address, api)
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
