"""A local SciCat: the /api/v3 subset beamflow uses, with the real backend's validation, stored in SQLite.

Modules: ``models`` (what the backend accepts, and its 400 messages), ``filters`` (the ``filter`` query),
``store`` (SQLite persistence), ``auth`` (users and passwords), ``api`` (the endpoints), ``server`` (HTTP on
the standard library), ``__main__`` (the command line) and ``testing`` (``LocalSciCat``, ``start_process``).
See docs/decisions/0018-local-scicat-on-the-standard-library.md for what differs from the real backend.
"""

from beamflow.scicat_local.api import API_PREFIX, DEFAULT_PID_PREFIX, DEFAULT_TOKEN_TTL
from beamflow.scicat_local.server import make_server
from beamflow.scicat_local.testing import LocalSciCat, LocalSciCatProcess, start_process

__all__ = [
    "API_PREFIX",
    "DEFAULT_PID_PREFIX",
    "DEFAULT_TOKEN_TTL",
    "LocalSciCat",
    "LocalSciCatProcess",
    "make_server",
    "start_process",
]
