"""What the local stand-ins of remote services (``beamflow.scicat_local``, ``beamflow.sfapi_local``,
``beamflow.globus_local``) share, on the standard library's HTTP server:

* ``Request`` and ``Response``: one HTTP exchange without sockets, so a stand-in's API (anything with
  ``handle(Request) -> Response``, ``StandInApi``) can be driven directly.
* ``StandInHandler``: reads a request (refusing chunked and too large bodies), hands it to the server's API and
  sends the answer as JSON; a stand-in sets its body limit, error bodies and content type through class hooks.
* ``StandInHTTPServer``: a threaded server holding the API, that can cut every open connection when it stops (so
  a stopped stand-in really refuses, as a service that went down does).
* ``ServerThread`` and ``StandInRunner``: serving from a background thread; the runner is the base of the
  packages' ``Local...`` test fixtures, restarting on the port it got first.
* ``wait_for_stop_signal``: how ``python -m`` runs a stand-in until SIGTERM or SIGINT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server hands it over: the raw (still percent-encoded) path, the decoded query,
    the headers and the body bytes."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str:
        """A header's value whatever its case, ``""`` when absent."""
        lowered = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == lowered), "")

    def form(self) -> dict[str, list[str]]:
        """The body read as an ``application/x-www-form-urlencoded`` form."""
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def param(self, name: str) -> str | None:
        """The last value of a query parameter, ``None`` when absent."""
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Response:
    """A status, a JSON body and extra headers. A ``None`` body goes out as no body or as ``null``, as the
    stand-in's handler says (``StandInHandler.empty_when_none``)."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class StandInApi(Protocol):
    def handle(self, request: Request) -> Response: ...


ApiT = TypeVar("ApiT", bound=StandInApi)
ServerT = TypeVar("ServerT", bound="StandInHTTPServer[Any]")


def _http_root(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class StandInHandler(BaseHTTPRequestHandler):
    """Every method goes to ``serve``; access lines go to the debug log, not stderr.

    A stand-in's handler tells it apart through the class attributes (body limit, content type, ``None`` bodies,
    the name and logger of failures) and ``body_refusal``/``internal_error`` (its error answers).
    """

    server: StandInHTTPServer[StandInApi]
    protocol_version = "HTTP/1.1"
    # A slow or silent client must not hold a thread forever.
    timeout = 60

    max_body_bytes: ClassVar[int] = 16 * 1024 * 1024
    content_type: ClassVar[str] = "application/json; charset=utf-8"
    empty_when_none: ClassVar[bool] = True
    service_name: ClassVar[str] = "stand-in"
    failure_log: ClassVar[logging.Logger] = log

    def body_refusal(self, *, chunked: bool) -> Response:
        """The answer to a chunked body (``chunked``) or one over ``max_body_bytes``."""
        return Response(413)

    def internal_error(self, path: str) -> Response:
        """The answer when the API raised on a request for ``path``."""
        return Response(500)

    def serve(self) -> None:
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        length = 0 if chunked else int(self.headers.get("Content-Length") or 0)
        if chunked or length > self.max_body_bytes:
            # The body is left unread on the socket, so the connection cannot carry another request.
            self.send_answer(self.body_refusal(chunked=chunked), close=True)
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
            self.failure_log.exception("%s failed on %s %s", self.service_name, self.command, parts.path)
            response = self.internal_error(parts.path)
        self.send_answer(response)

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

    def send_answer(self, response: Response, *, close: bool = False) -> None:
        self.send_json(
            response.status,
            response.body,
            headers=response.headers,
            close=close,
            content_type=self.content_type,
            empty_when_none=self.empty_when_none,
        )

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


class StandInHTTPServer(ThreadingHTTPServer, Generic[ApiT]):
    """A ThreadingHTTPServer answering from ``api`` through ``handler_class``, that knows its open connections,
    to close them all when it stops."""

    handler_class: ClassVar[type[StandInHandler]] = StandInHandler
    daemon_threads = True
    # Handler threads are not joined on close: close_all() has already cut their sockets.
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: ApiT) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, self.handler_class)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def root_url(self) -> str:
        return _http_root(str(self.server_address[0]), self.port)

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

    def __init__(self, server: StandInHTTPServer[Any], name: str) -> None:
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


class StandInRunner(Generic[ServerT]):
    """A stand-in serving from a background thread; a context manager that starts it and ``close``s it.

    The port chosen at the first start (``port=0``: any free one) is kept, so a ``start`` after ``stop`` listens
    where clients expect: the service was down for a while. A subclass binds its server in ``_bind`` and may
    clean up after a stop in ``_after_stop``; ``thread_name`` (with the port) names the serving thread.
    """

    thread_name: ClassVar[str] = "stand-in"

    def __init__(self, *, host: str, port: int) -> None:
        self.host = host
        self._port = port
        self._server: ServerT | None = None
        self._thread: ServerThread | None = None

    def _bind(self, port: int) -> ServerT:
        """A bound, listening (not yet serving) server on ``self.host`` and ``port``."""
        raise NotImplementedError

    def _after_stop(self, server: ServerT) -> None:
        """Called once ``server`` no longer serves."""

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def server(self) -> ServerT:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._server

    @property
    def port(self) -> int:
        """The port it listens on (or will listen on again after ``stop``)."""
        if self._port == 0:
            raise RuntimeError(f"{type(self).__name__} has not been started yet, so its port is not chosen")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://host:port``, also while stopped (once started): where it serves, or will again."""
        if self._server is not None:
            return self._server.root_url
        return _http_root(self.host, self.port)

    def start(self) -> Self:
        """Bind the port and serve; returns self. The port is listening when this returns."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        server = self._bind(self._port)
        self._port = server.port
        self._server = server
        self._thread = ServerThread(server, f"{self.thread_name}-{server.port}").start()
        return self

    def stop(self) -> None:
        """Stop serving: the port refuses connections and open connections are cut. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        if thread is not None:
            thread.stop()
        self._after_stop(server)

    def restart(self) -> None:
        """Stop, then serve again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """The end of the stand-in, what leaving the ``with`` block does: ``stop`` unless a subclass says more."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def wait_for_stop_signal(*announcements: str) -> None:
    """Print ``announcements`` to stderr, a line each, then block until SIGTERM or SIGINT (main thread only).

    The handlers are in place before the first line is out, so whoever waits for that line may signal at once.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for line in announcements:
        print(line, file=sys.stderr, flush=True)
    stop.wait()
