"""What the local stand-ins of remote services (``beamflow.scicat_local``, ``beamflow.sfapi_local``) share:
a threaded standard-library HTTP server that can cut every open connection when it stops (so a stopped
stand-in really refuses, as a service that went down does), and a runner serving it from a thread.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class StandInHandler(BaseHTTPRequestHandler):
    """Every method goes to ``serve``; access lines go to the debug log, not stderr."""

    protocol_version = "HTTP/1.1"
    # A slow or silent client must not hold a thread forever.
    timeout = 60

    def serve(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def do_PATCH(self) -> None:
        self.serve()

    def do_PUT(self) -> None:
        self.serve()

    def do_DELETE(self) -> None:
        self.serve()

    def send_json(
        self,
        status: int,
        body: object,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
        content_type: str = "application/json; charset=utf-8",
        empty_when_none: bool = True,
    ) -> None:
        """One JSON answer; ``None`` is no body at all (or ``null`` when not ``empty_when_none``); ``close``
        ends the connection after it."""
        payload = b"" if body is None and empty_when_none else json.dumps(body).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class StandInHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its open connections, to close them all when it stops."""

    daemon_threads = True
    # Handler threads are not joined on close: close_all() has already cut their sockets.
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def root_url(self) -> str:
        host = str(self.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Stop serving: close the listening socket and cut every open connection."""
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by its peer
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class ServerThread:
    """Serves a ``StandInHTTPServer`` from a daemon thread until ``stop``."""

    def __init__(self, server: StandInHTTPServer, name: str) -> None:
        self.server = server
        # A short poll interval: stop() waits for the serving loop to notice, and tests stop servers often.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The port refuses connections and open connections are cut when this returns."""
        self.server.shutdown()
        self.server.close_all()
        self._thread.join(timeout=10)
