"""A whole beamflow on one machine: the embedded NATS server plus one process per service.

``beamflow up`` and ``beamflow demo`` both use this (with the local SciCat when the ingestor runs and no
catalog.url is set). Each service runs as its own ``beamflow run``
process, exactly as in production, so a crash in one does not take the others down; a service that exits
unexpectedly is restarted with back-off. Logs go to ``<state>/logs/<service>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beamflow.common.bus_auth import EmbeddedUsers
from beamflow.common.config import BeamflowConfig
from beamflow.common.local_catalog import local_catalog
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.service import discover

#: The local SciCat's name among the stack's processes (and its log file's).
LOCAL_CATALOG = "scicat"
#: The status page's name among the stack's processes: ``beamflow status-page``, a command, not a service.
STATUS_PAGE = "status-page"

log = logging.getLogger(__name__)


@dataclass
class ServiceProcess:
    name: str
    health_port: int
    log_path: Path
    command: list[str] | None = None
    """Default: ``beamflow run <name>``; the local SciCat brings its own."""
    ready_path: str = "/readyz"
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
        #: The embedded server's users (one per service, and the operator), made at start.
        self.users: EmbeddedUsers | None = None

    @property
    def url(self) -> str:
        if self.external_url:
            return self.external_url
        assert self.server is not None
        return self.server.url

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.external_url:
            factories = discover()
            built = {name: factories[name](self.config) for name in self.services if name in factories}
            self.users = EmbeddedUsers(self.config, built)
            conf = Path(self.config.nats.data_dir) / "auth.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.users.server_config())
            self.server = EmbeddedNats(
                Path(self.config.nats.data_dir),
                port=self.config.nats.port,
                config_file=conf,
                probe_auth=self.users.operator(),
            )
            await self.server.start()
            self.config.embedded_url_file.write_text(self.server.url)
        if "ingestor" in self.services and not self.config.catalog.url:
            await self._start(self._local_catalog_process())
        for name in self.services:
            await self._start(ServiceProcess(name, free_port(), self.log_dir / f"{name}.log"))
        await self._start(self._status_page_process())

    async def _start(self, proc: ServiceProcess) -> None:
        self.processes[proc.name] = proc
        await self._spawn(proc)
        self._supervisors.append(asyncio.create_task(self._supervise(proc)))

    def _local_catalog_process(self) -> ServiceProcess:
        """The local SciCat, for an ingestor with no ``catalog.url``: its data, users and URL in the state folder."""
        files = local_catalog(self.config)
        password = files.ensure_password()
        users = {self.config.catalog.username: password}
        fd = os.open(files.users_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(users, handle)
        port = free_port()
        files.url_file.write_text(f"http://127.0.0.1:{port}/api/v3")
        command = [
            sys.executable,
            "-m",
            "beamflow.scicat_local",
            "--db",
            str(files.database),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--users",
            str(files.users_file),
        ]
        return ServiceProcess(
            LOCAL_CATALOG, port, self.log_dir / f"{LOCAL_CATALOG}.log", command=command, ready_path="/api/v3/health"
        )

    def _status_page_process(self) -> ServiceProcess:
        """The status page on a free port; its HTTP port is also its health port."""
        port = free_port()
        command = [sys.executable, "-m", "beamflow.common.cli", "status-page", "--config", str(self.config_path)]
        command += ["--nats", self.url, "--host", "127.0.0.1", "--port", str(port)]
        return ServiceProcess(
            STATUS_PAGE, port, self.log_dir / f"{STATUS_PAGE}.log", command=command, ready_path="/healthz"
        )

    async def _spawn(self, proc: ServiceProcess) -> None:
        command = proc.command or [
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
                env=self._env_for(proc.name),
                start_new_session=True,
            )
        proc.started_at = time.monotonic()

    def _env_for(self, name: str) -> dict[str, str]:
        """The process's environment: each service connects to the embedded server as its own user."""
        env = os.environ.copy()
        if self.users is not None and name in self.users.services:
            env.update(self.users.env_for(name))
        return env

    @property
    def operator_auth(self) -> dict[str, Any]:
        """How this process (``beamflow demo``'s progress view) connects to the embedded server."""
        return self.users.operator() if self.users is not None else {}

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
                if await _ready(self.processes[name].health_port, self.processes[name].ready_path):
                    pending.discard(name)
                elif not self.processes[name].alive and self.processes[name].restarts > 3:
                    raise RuntimeError(f"service {name} keeps exiting; see {self.processes[name].log_path}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"services not ready after {timeout:.0f}s: {sorted(pending)}; see {self.log_dir}")
            if pending:
                await asyncio.sleep(0.05)  # polling health endpoints of other processes

    async def stop(self) -> None:
        self._stopping = True
        # Services first (the ingestor may still be writing to the local SciCat), then what they use.
        services = [p for p in self.processes.values() if p.name != LOCAL_CATALOG]
        await self._terminate(services)
        await self._terminate([p for p in self.processes.values() if p.name == LOCAL_CATALOG])
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        if LOCAL_CATALOG in self.processes:
            local_catalog(self.config).url_file.unlink(missing_ok=True)
        if self.server is not None:
            self.server.stop()
            self.config.embedded_url_file.unlink(missing_ok=True)

    async def _terminate(self, processes: list[ServiceProcess]) -> None:
        for proc in processes:
            if proc.alive and proc.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.process.send_signal(signal.SIGTERM)
        for proc in processes:
            if proc.process is not None:
                try:
                    await asyncio.wait_for(proc.process.wait(), self.config.delivery.drain_timeout.total_seconds() + 5)
                except TimeoutError:
                    proc.process.kill()
                    await proc.process.wait()


async def _ready(port: int, path: str = "/readyz") -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2)
        return b" 200 " in status
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
