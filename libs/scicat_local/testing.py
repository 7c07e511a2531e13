"""Run a local SciCat from tests or tools: in a background thread (``LocalSciCat``) or as a process.

``LocalSciCat`` is for in-process tests: ``with LocalSciCat(tmp_path / "scicat.db") as scicat:`` gives
``scicat.url`` (the ``/api/v3`` base URL pyscicat takes) and a user it made up (``scicat.username`` /
``scicat.password``). ``stop()`` closes the port (connections are refused) and ``start()`` serves the same
catalog on the same port again, to test "SciCat was down for a while". ``start_process`` runs
``python -m beamflow.scicat_local`` as ``beamflow up`` does, and waits for its "listening" line.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from beamflow.common.standin_http import StandInRunner
from beamflow.scicat_local.api import API_PREFIX, DEFAULT_PID_PREFIX, DEFAULT_TOKEN_TTL
from beamflow.scicat_local.auth import User
from beamflow.scicat_local.server import LISTENING_MESSAGE, SciCatHTTPServer, make_server

log = logging.getLogger(__name__)


class LocalSciCat(StandInRunner[SciCatHTTPServer]):
    """A local SciCat serving from a background thread; a context manager that starts and stops it.

    ``users`` maps usernames to passwords; without it one user ``ingestor`` gets a random password. The port
    chosen at the first start (``port=0``: any free one) is kept, so a restart listens where clients expect.
    """

    thread_name = "scicat-local"

    def __init__(
        self,
        db_path: Path | str,
        *,
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        pid_prefix: str = DEFAULT_PID_PREFIX,
        token_ttl: float = DEFAULT_TOKEN_TTL,
    ) -> None:
        super().__init__(host=host, port=port)
        self.db_path = Path(db_path)
        credentials = dict(users) if users else {"ingestor": secrets.token_urlsafe(16)}
        self.users = {name: User(name, password=password) for name, password in credentials.items()}
        self.username, self.password = next(iter(credentials.items()))
        self.pid_prefix = pid_prefix
        self.token_ttl = token_ttl

    def _bind(self, port: int) -> SciCatHTTPServer:
        return make_server(
            self.db_path, self.users, host=self.host, port=port, pid_prefix=self.pid_prefix, token_ttl=self.token_ttl
        )

    def _after_stop(self, server: SciCatHTTPServer) -> None:
        server.api.store.close()

    @property
    def url(self) -> str:
        """The base URL pyscicat takes, ``http://host:port/api/v3``."""
        return self.root_url + API_PREFIX


@dataclass
class LocalSciCatProcess:
    """A ``python -m beamflow.scicat_local`` child process and the URL it announced."""

    process: subprocess.Popen[str]
    url: str
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, and return the exit status (SIGKILL if it does not exit within ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return int(self.process.returncode)

    def __enter__(self) -> LocalSciCatProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_process(
    db_path: Path | str,
    port: int = 0,
    *,
    users_file: Path | str | None = None,
    host: str = "127.0.0.1",
    pid_prefix: str = DEFAULT_PID_PREFIX,
    token_ttl: float = DEFAULT_TOKEN_TTL,
    env: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> LocalSciCatProcess:
    """Start ``python -m beamflow.scicat_local`` and return once it listens (``RuntimeError`` if it dies
    or stays silent for ``timeout`` seconds). Users come from ``users_file`` or the environment."""
    command = [
        sys.executable,
        "-m",
        "beamflow.scicat_local",
        "--db",
        str(db_path),
        "--host",
        host,
        "--port",
        str(port),
        "--prefix",
        pid_prefix,
        "--token-ttl",
        str(token_ttl),
    ]
    if users_file is not None:
        command += ["--users", str(users_file)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ if env is None else env),
    )
    tail: collections.deque[str] = collections.deque(maxlen=200)
    announced: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        # Keep reading stderr for the process's whole life, so it never blocks on a full pipe.
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip("\n")
            tail.append(line)
            log.debug("scicat_local[%d]: %s", process.pid, line)
            if line.startswith(LISTENING_MESSAGE):
                announced.put(line[len(LISTENING_MESSAGE) :].strip())
        announced.put(None)

    threading.Thread(target=drain, name=f"scicat-local-stderr-{process.pid}", daemon=True).start()
    try:
        url = announced.get(timeout=timeout)
    except queue.Empty:
        url = None
    if url is None:
        running = process.poll() is None
        if running:
            process.kill()
        process.wait()
        reason = f"did not announce itself within {timeout} s" if running else f"exited with {process.returncode}"
        raise RuntimeError(f"local SciCat {reason}:\n" + "\n".join(tail))
    return LocalSciCatProcess(process, url, tail)
