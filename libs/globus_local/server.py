"""The Globus stand-in's HTTP server, on the standard library (``beamflow.common.standin_http``).

One thread per connection, HTTP/1.1 keep-alive, JSON out; each request goes to ``GlobusApi.handle`` as a plain
``Request``. One server answers both Globus Auth (``/v2/oauth2/token``) and the Transfer API (``/v0.10/...``),
which Globus serves from two hosts: globus-sdk finds them through ``GLOBUS_SDK_SERVICE_URL_AUTH`` and
``GLOBUS_SDK_SERVICE_URL_TRANSFER``, both the server's root URL (``service_env``). Stopping closes the listening
socket and every open connection. Request logs go to ``logging`` at debug level.
"""

from __future__ import annotations

import logging

from beamflow.common.standin_http import Response, StandInHandler, StandInHTTPServer
from beamflow.globus_local.api import GlobusApi
from beamflow.globus_local.wire import TransferFault

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
# The line ``python -m beamflow.globus_local`` prints to stderr once it listens.
LISTENING_MESSAGE = "local Globus listening on "


class _Handler(StandInHandler):
    max_body_bytes = MAX_BODY_BYTES
    content_type = "application/json"
    service_name = "local Globus"
    failure_log = log

    def body_refusal(self, *, chunked: bool) -> Response:
        fault = TransferFault(413, "ClientError.RequestEntityTooLarge", "Request body too large or chunked")
        return fault.response(self.path)

    def internal_error(self, path: str) -> Response:
        return TransferFault(500, "InternalError", "An internal error occurred").response(path)


class GlobusHTTPServer(StandInHTTPServer[GlobusApi]):
    """The Globus stand-in's HTTP server: the stand-in server with the API it answers from."""

    handler_class = _Handler

    @property
    def auth_url(self) -> str:
        """What ``GLOBUS_SDK_SERVICE_URL_AUTH`` must be (Globus: ``https://auth.globus.org/``)."""
        return self.root_url + "/"

    @property
    def transfer_url(self) -> str:
        """What ``GLOBUS_SDK_SERVICE_URL_TRANSFER`` must be (Globus: ``https://transfer.api.globus.org/``)."""
        return self.root_url + "/"

    @property
    def service_env(self) -> dict[str, str]:
        return {"GLOBUS_SDK_SERVICE_URL_AUTH": self.auth_url, "GLOBUS_SDK_SERVICE_URL_TRANSFER": self.transfer_url}


def make_server(api: GlobusApi, *, host: str = "127.0.0.1", port: int = 0) -> GlobusHTTPServer:
    """A bound, listening (not yet serving) Globus stand-in; call ``serve_forever`` to answer requests."""
    return GlobusHTTPServer((host, port), api)
