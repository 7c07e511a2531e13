"""A tiny HTTP endpoint for probes and scrapers: ``/healthz`` (alive), ``/readyz`` (connected and consuming)
and ``/metrics`` (Prometheus text, when the service was given a metrics renderer).

Plain asyncio, no web framework: a service should not pull in a server stack to answer three URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any


class HealthServer:
    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self._status = status
        self._metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else "/"
            status = self._status()
            content_type = "application/json"
            payload: bytes | None = None
            if path == "/metrics" and self._metrics is not None:
                code, body = 200, {}
                payload, content_type = self._metrics()
            elif path == "/healthz":
                code, body = 200, {"status": "alive", **status}
            elif path == "/readyz":
                code = 200 if status.get("ready") else 503
                body = {"status": "ready" if code == 200 else "not ready", **status}
            else:
                code, body = 404, {"error": "try /healthz, /readyz or /metrics"}
            if payload is None:
                payload = json.dumps(body, default=str).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
            writer.write(
                f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
