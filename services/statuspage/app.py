"""The status page's routes, and the asyncio HTTP server that answers them.

=======================================  ====================================================================
``GET /``                                recent scans, newest first, a timeline per stage (live)
``GET /scan/<id>``                       one scan: copies and checksums, bundles, catalog link, holds, ...
``GET /deadletters``                     dead letters, each with a Replay button
``GET /api/scans``                       ``ScanList`` (``?limit=``, ``?beamline=``, ``?state=``)
``GET /api/scans/<id>``                  ``ScanDetail``
``GET /api/deadletters``                 ``DeadLetterList``
``POST /api/deadletters/<seq>/replay``   ``ReplayView``; needs the header ``X-Requested-With: beamflow``
``GET /api/events``                      Server-Sent Events: ``scan``, ``deadletter``, ``activity``
``GET /healthz``                         ``Health``: 200 while the process serves, with NATS and feed state
=======================================  ====================================================================

The server answers from the moment it starts; NATS is connected in the background (and reconnected by the
client), so a probe sees the process alive while the bus is away, and the data routes say 503 until it is back.
A replay needs a header a form on another site cannot send without our consent (we never answer CORS), so a
page elsewhere cannot make an operator's browser replay dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import nats.errors
from beamflow.common import deadletters
from beamflow.common.bus import connect
from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import DeadLetterNotFound, DeadLetterUnreadable, ReplayImpossible
from beamflow.common.ledger import SCAN_STATES, Ledger, ScanState
from beamflow.common.local_catalog import LocalCatalogNotRunning, local_catalog
from beamflow.statuspage.live import Listener, LiveFeed
from beamflow.statuspage.pages import STATIC, PageName, render, static_file
from beamflow.statuspage.views import (
    DeadLetterList,
    Health,
    Problem,
    ReplayView,
    ScanDetail,
    ScanList,
    dead_letter_view,
    scan_detail,
    scan_row,
)
from beamflow.statuspage.wire import BadRequest, Request, Response, encode, head, read_request
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: A comment line on every idle event stream this often, so proxies keep it open and a gone browser is noticed.
KEEPALIVE_S = 15.0
#: How long stopping waits for open responses (event streams end at once) before cutting them.
STOP_GRACE_S = 2.0
REPLAY_HEADER = "x-requested-with"
REPLAY_HEADER_VALUE = "beamflow"

_SCAN_ID = re.compile(r"^[-_=.A-Za-z0-9]{1,200}$")
_SCAN_PAGE = re.compile(r"^/scan/(?P<id>[^/]+)$")
_SCAN_API = re.compile(r"^/api/scans/(?P<id>[^/]+)$")
_REPLAY = re.compile(r"^/api/deadletters/(?P<seq>[0-9]{1,18})/replay$")
_STATIC = re.compile(r"^/static/(?P<name>[^/]+)$")


class _Refused(Exception):
    """A request we answer with an error status and a ``Problem``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(status, model.model_dump_json().encode(), "application/json", {"Cache-Control": "no-store"})


def _page(page: PageName, title: str, data: BaseModel | None, status: int = 200) -> Response:
    return Response(status, render(page, title, data), "text/html; charset=utf-8", {"Cache-Control": "no-store"})


class StatusPage:
    """The web app: ``await page.start()`` serves at ``page.url`` until ``await page.stop()``."""

    def __init__(
        self,
        config: BeamflowConfig,
        nats_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.nats_url = nats_url
        self.host = host
        self.port = port
        self.auth = dict(auth or {})
        self.live: LiveFeed | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._server: asyncio.Server | None = None
        self._connector: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._connector = asyncio.create_task(self._connect_when_possible(), name="statuspage-connect")

    async def stop(self) -> None:
        if self._connector is not None:
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
        if self._server is not None:
            self._server.close()
        if self.live is not None:
            await self.live.stop()  # ends every event stream
        if self._connections:
            _, late = await asyncio.wait(set(self._connections), timeout=STOP_GRACE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._nc is not None:
            await self._nc.close()

    async def _connect_when_possible(self) -> None:
        while True:
            try:
                self._nc = await connect(self.nats_url, self.config.nats, name="beamflow-statuspage", auth=self.auth)
                break
            except Exception as exc:
                log.warning("NATS not reachable yet; pages say so until it is", extra={"error": type(exc).__name__})
                await asyncio.sleep(self.config.nats.reconnect_time_wait.total_seconds())
        self._js = self._nc.jetstream()
        self.live = LiveFeed(self._js)
        self.live.start()
        log.info("connected to NATS")

    @property
    def js(self) -> JetStreamContext:
        if self._js is None or self._nc is None or not self._nc.is_connected:
            raise _Refused(503, "not connected to NATS; the status page keeps trying (see its log)")
        return self._js

    def catalog_base(self) -> str | None:
        """The SciCat API the datasets are in: the configured one, else the local one when it runs."""
        if self.config.catalog.url:
            return self.config.catalog.url
        try:
            return local_catalog(self.config).url()
        except LocalCatalogNotRunning:
            return None

    # -- serving ------------------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            try:
                request = await read_request(reader)
            except BadRequest as exc:
                writer.write(encode(_json(Problem(error=str(exc)), 400)))
                await writer.drain()
                return
            if request is None:
                return
            answer = await self._answer(request)
            if isinstance(answer, Listener):
                await self._stream(answer, reader, writer)
                return
            log.debug("request", extra={"method": request.method, "path": request.path, "status": answer.status})
            writer.write(encode(answer))
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the browser went away, or never finished its request
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, request: Request) -> Response | Listener:
        html = not request.path.startswith("/api/") and request.path != "/healthz"
        try:
            return await self.route(request)
        except _Refused as exc:
            if html:
                return _page("missing", "beamflow status", Problem(error=str(exc)), exc.status)
            return _json(Problem(error=str(exc)), exc.status)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("NATS refused a request", extra={"path": request.path, "error": repr(exc)})
            problem = Problem(error=f"NATS did not answer ({type(exc).__name__}); try again")
            return _page("missing", "beamflow status", problem, 503) if html else _json(problem, 503)
        except Exception:
            log.exception("request failed", extra={"method": request.method, "path": request.path})
            problem = Problem(error="internal error; the status page's log has the details")
            return _page("missing", "beamflow status", problem, 500) if html else _json(problem, 500)

    async def _stream(self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        writer.write(head(200, "text/event-stream; charset=utf-8", headers, None))
        writer.write(b"retry: 2000\n: connected\n\n")
        await writer.drain()
        gone = asyncio.create_task(reader.read(1))  # EOF (or anything) from the browser ends its stream
        frame: asyncio.Task[bytes | None] | None = None
        try:
            while True:
                frame = frame or asyncio.create_task(listener.get())
                done, _ = await asyncio.wait({frame, gone}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    break
                if frame not in done:
                    writer.write(b": keepalive\n\n")
                    await writer.drain()
                    continue
                data, frame = frame.result(), None
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
        finally:
            for pending in (frame, gone):
                if pending is not None:
                    pending.cancel()
            if self.live is not None:
                self.live.leave(listener)

    # -- routes ----------------------------------------------------------------------------------------------------

    async def route(self, request: Request) -> Response | Listener:
        path = request.path
        if match := _REPLAY.match(path):
            if request.method != "POST":
                raise _Refused(405, "replay with POST")
            return _json(await self.replay(request, int(match["seq"])))
        if request.method != "GET":
            raise _Refused(405, f"{request.method} is not served here; only GET (and POST to replay)")
        if path == "/healthz":
            return _json(self.health())
        if path == "/":
            return _page("scans", "beamflow: recent scans", await self.scans(request))
        if match := _SCAN_PAGE.match(path):
            detail = await self.scan(match["id"])
            return _page("scan", f"scan {detail.summary.scan_id}", detail)
        if path == "/deadletters":
            return _page("deadletters", "beamflow: dead letters", await self.dead_letters())
        if path == "/api/scans":
            return _json(await self.scans(request))
        if match := _SCAN_API.match(path):
            return _json(await self.scan(match["id"]))
        if path == "/api/deadletters":
            return _json(await self.dead_letters())
        if path == "/api/events":
            return self.events()
        if (match := _STATIC.match(path)) and match["name"] in STATIC:
            name = match["name"]
            return Response(200, static_file(name), STATIC[name], {"Cache-Control": "no-cache"})
        raise _Refused(404, f"nothing at {path}; the scans are at /")

    def health(self) -> Health:
        connected = self._nc is not None and self._nc.is_connected
        return Health(nats_connected=connected, live=self.live is not None and self.live.ready.is_set())

    async def scans(self, request: Request) -> ScanList:
        limit = _limit(request.param("limit"))
        beamline = request.param("beamline") or None
        state = _state(request.param("state"))
        js = self.js
        try:
            ledger = await Ledger.open(js)
            records = await ledger.recent(limit=limit, beamline=beamline, state=state)
        except NotFoundError:
            note = "no ledger yet: it is created when the first service starts"
            return ScanList(scans=[], limit=limit, beamline=beamline, state=state, note=note)
        return ScanList(scans=[scan_row(r) for r in records], limit=limit, beamline=beamline, state=state)

    async def scan(self, scan_id: str) -> ScanDetail:
        if not _SCAN_ID.match(scan_id):
            raise _Refused(400, "not a scan id: letters, digits, '-', '_', '=' and '.' only")
        try:
            record = await (await Ledger.open(self.js)).get(scan_id)
        except NotFoundError:
            record = None
        if record is None:
            raise _Refused(404, f"no scan {scan_id} in the ledger")
        return scan_detail(record, self.catalog_base())

    async def dead_letters(self) -> DeadLetterList:
        letters = await deadletters.read(self.js)
        return DeadLetterList(dead_letters=[dead_letter_view(x) for x in letters[-MAX_LIMIT:]])

    async def replay(self, request: Request, seq: int) -> ReplayView:
        if request.headers.get(REPLAY_HEADER) != REPLAY_HEADER_VALUE:
            raise _Refused(
                403, f"a replay must come from the status page (header X-Requested-With: {REPLAY_HEADER_VALUE})"
            )
        try:
            done = await deadletters.replay(self.js, seq)
        except DeadLetterNotFound as exc:
            raise _Refused(404, str(exc)) from None
        except (ReplayImpossible, DeadLetterUnreadable) as exc:
            raise _Refused(409, str(exc)) from None
        except APIError as exc:  # e.g. a user without the operator's right to delete dead letters
            raise _Refused(502, f"NATS refused the replay of dead letter {seq}: {exc.description or exc}") from None
        letter = done.letter
        log.info(
            "dead letter replayed",
            extra={
                "seq": seq,
                "scan_id": letter.event.scan_id,
                "subject": letter.original.subject,
                "stream": done.stream,
                "stream_seq": done.stream_seq,
                "duplicate": done.duplicate,
            },
        )
        return ReplayView(
            seq=seq,
            scan_id=letter.event.scan_id,
            subject=letter.original.subject,
            stream=done.stream,
            stream_seq=done.stream_seq,
            duplicate=done.duplicate,
        )

    def events(self) -> Listener:
        if self.live is None:
            raise _Refused(503, "not connected to NATS yet; the page retries")
        return self.live.listen()


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _Refused(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _state(raw: str | None) -> ScanState | None:
    if not raw:
        return None
    for state in SCAN_STATES:
        if state == raw:
            return state
    raise _Refused(400, f"state must be one of {', '.join(SCAN_STATES)}")
