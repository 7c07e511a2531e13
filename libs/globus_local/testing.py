"""Run the Globus stand-in from tests or tools: ``LocalGlobus`` serves it from a background thread.

``with LocalGlobus(tmp_path / "globus") as globus:`` listens on 127.0.0.1 (a free port), with one service-account
client (``globus.client_credentials``: a random UUID and secret). Collections are added with
``globus.add_collection(uuid, folder)``. Then, with ``globus.env`` in the environment (the two
``GLOBUS_SDK_SERVICE_URL_*`` variables), the unmodified SDK talks to it::

    app = globus_sdk.ClientApp(client_id=..., client_secret=..., config=GlobusAppConfig(token_storage="memory"))
    transfer = globus_sdk.TransferClient(app=app)

``globus.api`` is the ``GlobusApi`` with the test hooks (``stall``, ``expire_tokens``, ``task``, ``wait_idle``,
``calls``). ``stop()`` closes the port (``start()`` serves again on it: Globus unreachable for a while, tasks going
on); ``close()`` -- also what leaving the ``with`` block does -- stops the task threads too.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

from beamflow.common.standin_http import StandInRunner
from beamflow.globus_local.api import GlobusApi
from beamflow.globus_local.auth import DEFAULT_TOKEN_TTL, ClientCredentials
from beamflow.globus_local.server import GlobusHTTPServer, make_server
from beamflow.globus_local.storage import Collection
from beamflow.globus_local.tasks import DEFAULT_RETRY_INTERVAL


def make_client_credentials() -> ClientCredentials:
    """A new confidential client: a UUID client id (as Globus Auth issues) and a random secret."""
    return ClientCredentials(str(uuid.uuid4()), secrets.token_urlsafe(32))


class LocalGlobus(StandInRunner[GlobusHTTPServer]):
    """The Globus stand-in in a background thread, with one client; a context manager that starts and stops it.

    ``state_dir`` holds the default collection folders (``collection_dir(name)``). ``api`` exists from
    construction, so collections, clients and hooks can be set up before ``start``. ``stop`` leaves the tasks
    running (Globus's API being unreachable does not stop transfers); ``start`` serves again on the same port.
    """

    thread_name = "globus-local"

    def __init__(
        self,
        state_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        credentials: ClientCredentials | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        super().__init__(host=host, port=port)
        self.state_dir = Path(state_dir).absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api = GlobusApi(token_ttl=token_ttl, retry_interval=retry_interval)
        self.client_credentials = credentials or make_client_credentials()
        self.api.add_client(self.client_credentials.client_id, self.client_credentials.client_secret)

    def _bind(self, port: int) -> GlobusHTTPServer:
        return make_server(self.api, host=self.host, port=port)

    @property
    def auth_url(self) -> str:
        return self.server.auth_url

    @property
    def transfer_url(self) -> str:
        return self.server.transfer_url

    @property
    def env(self) -> dict[str, str]:
        """``GLOBUS_SDK_SERVICE_URL_AUTH`` and ``GLOBUS_SDK_SERVICE_URL_TRANSFER`` for this server."""
        return self.server.service_env

    def collection_dir(self, name: str) -> Path:
        return self.state_dir / "collections" / name

    def add_collection(
        self, collection_id: uuid.UUID | str, local_root: Path | str, *, writable: bool = True, display_name: str = ""
    ) -> Collection:
        return self.api.add_collection(collection_id, local_root, writable=writable, display_name=display_name)

    def close(self) -> None:
        """``stop``, and stop the task threads too (tasks keep the state they had): the end of the stand-in."""
        self.stop()
        self.api.close()
