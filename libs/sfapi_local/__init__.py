"""A local stand-in for NERSC: the Superfacility API endpoints sfapi-client uses, backed by a real single-node
Slurm, with htar and hsi stand-ins working on a local folder that plays HPSS.

Modules: ``slurm`` (``LocalSlurm``: munged + slurmctld + slurmd on loopback, installed with apt-get if missing),
``auth`` (client key pairs, private_key_jwt verification), ``api`` (the endpoints, over a LocalSlurm), ``server``
(HTTP on the standard library), ``testing`` (``LocalSfApi`` in a thread, ``LocalNersc`` = everything at once),
``hpss`` (the fake HPSS folder and the tool wrappers), ``htar`` and ``hsi`` (the tools), ``__main__`` (the command
line). Unmodified ``sfapi_client.AsyncClient(**nersc.client_kwargs())`` drives it end to end. The names below
are imported on first use, so the htar/hsi stand-ins (run once per command in jobs) start without loading the
server.

Where it differs from the real NERSC (each module says more): one node, one partition, every job runs as root;
the QOS is checked and reported by the API, not enforced by Slurm (no accounting database); "sacct" answers come
from the controller's memory (``MinJobAge``) and the job-completion log; the token and the API share one host and
tokens are opaque; the htar index is JSON; hsi has no interactive mode and expands no wildcards.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from beamflow.sfapi_local.api import API_PREFIX, DEFAULT_QOS, TOKEN_PATH, SfApi
    from beamflow.sfapi_local.auth import ClientCredentials, make_client_credentials
    from beamflow.sfapi_local.hpss import FakeHpss, write_tool_wrappers
    from beamflow.sfapi_local.slurm import JobRecord, LocalSlurm, SlurmUnavailable, ensure_slurm_installed
    from beamflow.sfapi_local.testing import LocalNersc, LocalSfApi

_EXPORTS = {
    "API_PREFIX": "api",
    "DEFAULT_QOS": "api",
    "TOKEN_PATH": "api",
    "SfApi": "api",
    "ClientCredentials": "auth",
    "make_client_credentials": "auth",
    "FakeHpss": "hpss",
    "write_tool_wrappers": "hpss",
    "JobRecord": "slurm",
    "LocalSlurm": "slurm",
    "SlurmUnavailable": "slurm",
    "ensure_slurm_installed": "slurm",
    "LocalNersc": "testing",
    "LocalSfApi": "testing",
}

__all__ = [
    "API_PREFIX",
    "DEFAULT_QOS",
    "TOKEN_PATH",
    "ClientCredentials",
    "FakeHpss",
    "JobRecord",
    "LocalNersc",
    "LocalSfApi",
    "LocalSlurm",
    "SfApi",
    "SlurmUnavailable",
    "ensure_slurm_installed",
    "make_client_credentials",
    "write_tool_wrappers",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
