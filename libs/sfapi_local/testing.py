"""Run the NERSC stand-in from tests or tools: ``LocalSfApi`` (the API over a LocalSlurm) and ``LocalNersc``.

``LocalNersc`` is the one-stop fixture: ``with LocalNersc(tmp / "nersc") as nersc:`` starts a LocalSlurm, the SFAPI
stand-in in a background thread, a fake HPSS folder with ``htar``/``hsi`` wrappers first on every job's PATH, and
one registered client. ``AsyncClient(**nersc.client_kwargs())`` (unmodified sfapi-client) then submits real Slurm
jobs; ``nersc.api.lose_job(id)`` makes the API forget one; ``nersc.tool_env`` runs the htar/hsi stand-ins directly.

Environment a job gets (besides Slurm's own): ``PATH`` starting with the wrappers' folder,
``BEAMFLOW_FAKE_HPSS_ROOT`` (the folder playing HPSS), ``BEAMFLOW_FAKE_HPSS_USER`` (HPSS home
``/home/<x>/<user>``) and ``SCRATCH`` (a folder in the state folder, standing in for ``$SCRATCH``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from beamflow.common.standin_http import StandInRunner
from beamflow.sfapi_local.api import DEFAULT_QOS, DEFAULT_TOKEN_TTL, SfApi
from beamflow.sfapi_local.auth import ClientCredentials, make_client_credentials
from beamflow.sfapi_local.hpss import ROOT_ENV, USER_ENV, FakeHpss, write_tool_wrappers
from beamflow.sfapi_local.server import SfApiHTTPServer, make_server
from beamflow.sfapi_local.slurm import LocalSlurm


class LocalSfApi(StandInRunner[SfApiHTTPServer]):
    """The SFAPI stand-in serving from a background thread over a running ``LocalSlurm``.

    ``api`` (the ``SfApi``) exists from construction, so clients and hooks can be set up before ``start``.
    """

    thread_name = "sfapi-local"

    def __init__(
        self,
        slurm: LocalSlurm,
        jobs_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clients: Mapping[str, str] | None = None,
        job_env: Mapping[str, str] | None = None,
        qos: Iterable[str] = DEFAULT_QOS,
        default_qos: str = "regular",
        token_ttl: float = DEFAULT_TOKEN_TTL,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api = SfApi(
            slurm, jobs_dir, clients=clients, job_env=job_env, qos=qos, default_qos=default_qos, token_ttl=token_ttl
        )

    def _bind(self, port: int) -> SfApiHTTPServer:
        return make_server(self.api, host=self.host, port=port)

    def _after_stop(self, server: SfApiHTTPServer) -> None:
        self.api.wait_for_submissions(timeout=30)

    @property
    def api_base_url(self) -> str:
        return self.server.api_base_url

    @property
    def token_url(self) -> str:
        return self.server.token_url


class LocalNersc:
    """LocalSlurm + the SFAPI stand-in + a fake HPSS + one client, started and stopped together."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        hpss_user: str = "alsdev",
        host: str = "127.0.0.1",
        port: int = 0,
        qos: Iterable[str] = DEFAULT_QOS,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        credentials: ClientCredentials | None = None,
        slurm: LocalSlurm | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.hpss_user = hpss_user
        self.hpss_root = self.state_dir / "hpss"
        self.bin_dir = self.state_dir / "bin"
        self.scratch = self.state_dir / "scratch"
        self.credentials = credentials or make_client_credentials()
        self.slurm = slurm or LocalSlurm(self.state_dir / "slurm")
        self._owns_slurm = slurm is None
        self.sfapi = LocalSfApi(
            self.slurm,
            self.state_dir / "jobs",
            host=host,
            port=port,
            clients={self.credentials.client_id: self.credentials.public_key_pem},
            job_env=self.job_env,
            qos=qos,
            token_ttl=token_ttl,
        )

    @property
    def api(self) -> SfApi:
        return self.sfapi.api

    @property
    def job_env(self) -> dict[str, str]:
        """What every job's environment gets on top of the server's: the stand-in tools and fake HPSS."""
        return {
            "PATH": f"{self.bin_dir}{os.pathsep}{self.slurm.env['PATH']}",
            ROOT_ENV: str(self.hpss_root),
            USER_ENV: self.hpss_user,
            "SCRATCH": str(self.scratch),
        }

    @property
    def tool_env(self) -> dict[str, str]:
        """An environment to run ``htar``/``hsi`` (by those names) directly, as a job would."""
        env = self.slurm.env
        env.update(self.job_env)
        return env

    @property
    def hpss(self) -> FakeHpss:
        return FakeHpss.from_environment(self.tool_env)

    @property
    def api_base_url(self) -> str:
        return self.sfapi.api_base_url

    @property
    def token_url(self) -> str:
        return self.sfapi.token_url

    def client_kwargs(self, credentials: ClientCredentials | None = None) -> dict[str, Any]:
        """Keyword arguments for ``sfapi_client.AsyncClient``/``Client`` talking to this stand-in."""
        creds = credentials or self.credentials
        return {
            "client_id": creds.client_id,
            "secret": creds.secret,
            "api_base_url": self.api_base_url,
            "token_url": self.token_url,
        }

    def start(self) -> LocalNersc:
        for folder in (self.hpss_root, self.scratch):
            folder.mkdir(parents=True, exist_ok=True)
        write_tool_wrappers(self.bin_dir)
        if self._owns_slurm:
            self.slurm.start()
        try:
            self.sfapi.start()
        except BaseException:
            if self._owns_slurm:
                self.slurm.stop()
            raise
        return self

    def stop(self) -> None:
        self.sfapi.stop()
        if self._owns_slurm:
            self.slurm.stop()

    def __enter__(self) -> LocalNersc:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
