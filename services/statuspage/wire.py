"""HTTP/1.1 over asyncio streams, as much as the status page needs: read a request, write a response or an
event stream.

Plain asyncio like the services' health endpoint (``beamflow.common.health``): a page of three views and a
handful of API routes does not need a web framework, and an event stream per browser is one coroutine here.
Every connection is closed after its response (``Connection: close``), so there is no keep-alive state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

#: Limits on what a client may send: the page's own requests are a line and a few headers.
MAX_HEADERS = 100
MAX_BODY = 64 * 1024
READ_TIMEOUT = 10.0

#: Sent with every answer: only this origin's script and style run, nobody may frame the page, no referrer
#: leaks a scan id to another site, and the browser never guesses a content type.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class BadRequest(Exception):
    """The client sent something that is not a request we read; answered with 400 and closed."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    """Percent-decoded path, without the query."""
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header names in lower case."""
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on the connection, or None when the client closed it without sending one."""
    try:
        line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
        if not line:
            return None
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(f"not an HTTP/1.x request line: {line[:80]!r}")
        method, target, _ = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            raw = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, sep, value = raw.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest(f"malformed header line: {raw[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        else:
            raise BadRequest(f"more than {MAX_HEADERS} headers")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise BadRequest("chunked request bodies are not accepted")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise BadRequest("Content-Length is not a number") from None
        if not 0 <= length <= MAX_BODY:
            raise BadRequest(f"request body over {MAX_BODY} bytes")
        body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT) if length else b""
    except (ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
        raise BadRequest(f"unreadable request: {exc}") from None
    url = urlsplit(target)
    return Request(
        method=method.upper(),
        path=unquote(url.path) or "/",
        query=parse_qs(url.query, keep_blank_values=True),
        headers=headers,
        body=body,
    )


def head(status: int, content_type: str, extra: Mapping[str, str], length: int | None) -> bytes:
    """Status line and headers; no Content-Length for a stream, whose end is the connection's end."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in {**SECURITY_HEADERS, **extra}.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode(response: Response) -> bytes:
    return head(response.status, response.content_type, response.headers, len(response.body)) + response.body


def event_frame(kind: str, data: str) -> bytes:
    """One Server-Sent Event; ``data`` must be one line (our JSON always is)."""
    return f"event: {kind}\ndata: {data}\n\n".encode()
