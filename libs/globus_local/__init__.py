"""A local Globus: the Globus Auth token endpoint and the Transfer API subset beamflow calls, doing real work on
local folders that play collections.

Modules: ``wire`` (the Transfer API's error body, request ids, times), ``auth`` (clients and the client-credentials
grant), ``storage`` (collections: Globus paths onto local folders, file documents), ``documents`` (checks on
submitted transfer/delete documents), ``copier`` (copying one file, and naming OS failures in Globus's codes),
``records`` (a task's record, its document and events), ``transfers`` and ``deletes`` (the work of each task
type), ``tasks`` (the engine: background threads, retries, deadlines, cancel, the stall hook), ``api`` (the
endpoints, HTTP-free), ``server`` (HTTP on the standard library), ``testing`` (``LocalGlobus``) and ``__main__``
(the command line). Unmodified ``globus_sdk.TransferClient(app=ClientApp(...))`` drives it once
``GLOBUS_SDK_SERVICE_URL_AUTH``/``GLOBUS_SDK_SERVICE_URL_TRANSFER`` point at it (``LocalGlobus.env``).

Where it differs from Globus (each module says more): one server plays both hosts; tokens are opaque and only
client-credentials grants exist; tasks start at once (no three-tasks-per-user queue); retries happen every
``retry_interval`` seconds instead of Globus's minutes-long back-off; deadlines are not extended automatically;
symlinks are followed or ignored, never recreated; paths outside a collection's folder are refused as a path
restriction would refuse them.
"""

from beamflow.globus_local.api import API_PREFIX, GlobusApi
from beamflow.globus_local.auth import TOKEN_PATH, TRANSFER_SCOPE, ClientCredentials
from beamflow.globus_local.server import GlobusHTTPServer, make_server
from beamflow.globus_local.testing import LocalGlobus, make_client_credentials

__all__ = [
    "API_PREFIX",
    "TOKEN_PATH",
    "TRANSFER_SCOPE",
    "ClientCredentials",
    "GlobusApi",
    "GlobusHTTPServer",
    "LocalGlobus",
    "make_client_credentials",
    "make_server",
]
