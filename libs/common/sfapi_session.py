"""One way to open NERSC's Superfacility API with sfapi-client and read a site file back through it.

The HPSS archive (its htar/hsi jobs) and the analyzer's NERSC job controller both submit Slurm jobs with
sfapi-client; they share the session set-up (the client's credentials from secrets, the poll interval) and
the file read-back (a job leaves its answer in a file; ``GET utilities/download`` returns it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from beamflow.common.endpoints import SfapiAccess

if TYPE_CHECKING:
    from sfapi_client._async.compute import AsyncCompute


@asynccontextmanager
async def sfapi_compute(access: SfapiAccess, poll_interval: timedelta) -> AsyncIterator[AsyncCompute]:
    """The configured machine, in a client session; ``SfApiError`` from sfapi-client passes through."""
    from sfapi_client import AsyncClient
    from sfapi_client.compute import Machine

    async with AsyncClient(
        client_id=access.client_id.resolve().get_secret_value(),
        secret=access.private_key.resolve().get_secret_value(),
        api_base_url=access.api_base_url,
        token_url=access.token_url,
        wait_interval=max(1, int(poll_interval.total_seconds())),
    ) as client:
        yield await client.compute(Machine(access.machine))


async def download_text(compute: AsyncCompute, path: str) -> str:
    """The text of the site's file ``path`` (a plain file of ours: no ``ls`` round trip to learn its kind)."""
    from sfapi_client.paths import AsyncRemotePath

    remote = AsyncRemotePath(path=path, compute=compute, perms="-rw-r--r--")
    return str((await remote.download()).read())
