"""A whole beamflow on one machine: the embedded NATS server plus one process per service.

``beamflow up`` and ``beamflow demo`` both use this. Each service runs as its own ``beamflow run``
process, exactly as in production, so a crash in one does not take the others down; a service that exits
unexpectedly is restarted with back-off. Logs go to ``<state>/logs/<service>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from beamflow.common.config import BeamflowConfig
from beamflow.common.natsserver import EmbeddedNats, free_port

log = logging.getLogger(__name__)


@dataclass
class ServiceProcess:
    name: str
    health_port: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Stack:
    def __init__(
        self, config: BeamflowConfig, config_path: Path, services: list[str], nats_url: str | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.services = services
        self.external_url = nats_url or config.nats.url
        self.server: EmbeddedNats | None = None
        self.processes: dict[str, ServiceProcess] = {}
        self._supervisors: list[asyncio.Task[None]] = []
        self._stopping = False
        self.log_dir = Path(config.state_dir) / "logs"

    @property
    def url(self) -> str:
        if self.external_url:
            return self.external_url
        assert self.server is not None
        return self.server.url

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.external_url:
            self.server = EmbeddedNats(Path(self.config.nats.data_dir), port=self.config.nats.port)
            await self.server.start()
            self.config.embedded_url_file.write_text(self.server.url)
        for name in self.services:
            proc = ServiceProcess(name, free_port(), self.log_dir / f"{name}.log")
            self.processes[name] = proc
            await self._spawn(proc)
            self._supervisors.append(asyncio.create_task(self._supervise(proc)))

    async def _spawn(self, proc: ServiceProcess) -> None:
        command = [
            sys.executable,
            "-m",
            "beamflow.common.cli",
            "run",
            proc.name,
            "--config",
            str(self.config_path),
            "--nats",
            self.url,
            "--health-port",
            str(proc.health_port),
        ]
        with proc.log_path.open("ab") as out:
            proc.process = await asyncio.create_subprocess_exec(
                *command,
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                env=os.environ.copy(),
                start_new_session=True,
            )
        proc.started_at = time.monotonic()

    async def _supervise(self, proc: ServiceProcess) -> None:
        delay = 0.5
        while not self._stopping:
            assert proc.process is not None
            code = await proc.process.wait()
            if self._stopping:
                return
            log.warning("service exited; restarting", extra={"service_name": proc.name, "code": code})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30) if time.monotonic() - proc.started_at < 60 else 0.5
            proc.restarts += 1
            await self._spawn(proc)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every service answers ready on its health endpoint."""
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        while pending:
            for name in list(pending):
                if await _ready(self.processes[name].health_port):
                    pending.discard(name)
                elif not self.processes[name].alive and self.processes[name].restarts > 3:
                    raise RuntimeError(f"service {name} keeps exiting; see {self.processes[name].log_path}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"services not ready after {timeout:.0f}s: {sorted(pending)}; see {self.log_dir}")
            if pending:
                await asyncio.sleep(0.05)  # polling health endpoints of other processes

    async def stop(self) -> None:
        self._stopping = True
        for proc in self.processes.values():
            if proc.alive and proc.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            if proc.process is not None:
                try:
                    await asyncio.wait_for(proc.process.wait(), self.config.delivery.drain_timeout.total_seconds() + 5)
                except TimeoutError:
                    proc.process.kill()
                    await proc.process.wait()
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        if self.server is not None:
            self.server.stop()
            self.config.embedded_url_file.unlink(missing_ok=True)


async def _ready(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2)
        return b" 200 " in status
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
