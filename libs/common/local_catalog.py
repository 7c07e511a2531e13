"""Where the local SciCat keeps its files, and the ingestor's credentials for it.

When ``catalog.url`` is unset, ``beamflow up`` runs the local SciCat (``python -m beamflow.scicat_local``)
with its database under ``<state_dir>/scicat`` and a password for the ingestor generated there on first
start (mode 0600, never logged); the ingestor reads the URL and the password from the same folder.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import TransientError


class LocalCatalogNotRunning(TransientError):
    """The local SciCat has not been started (yet); retried, as ``beamflow up`` may still be starting it."""


@dataclass(frozen=True)
class LocalCatalogFiles:
    folder: Path

    @property
    def database(self) -> Path:
        return self.folder / "catalog.sqlite"

    @property
    def url_file(self) -> Path:
        return self.folder / "url"

    @property
    def password_file(self) -> Path:
        return self.folder / "ingestor.password"

    @property
    def users_file(self) -> Path:
        return self.folder / "users.json"

    def ensure_password(self) -> str:
        """The ingestor's password, generated on first use; only the owner can read the file."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.password_file.exists():
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return self.password_file.read_text().strip()

    def url(self) -> str:
        try:
            return self.url_file.read_text().strip()
        except OSError:
            raise LocalCatalogNotRunning(
                f"no catalog.url in the config and no local SciCat URL in {self.url_file}; start beamflow with "
                "`beamflow up` (it starts the local SciCat) or set catalog.url"
            ) from None

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except OSError:
            raise LocalCatalogNotRunning(
                f"the local SciCat's password file {self.password_file} is missing; `beamflow up` creates it"
            ) from None


def local_catalog(config: BeamflowConfig) -> LocalCatalogFiles:
    return LocalCatalogFiles(config.local_catalog_dir)


def catalog_url(config: BeamflowConfig) -> str:
    """The configured SciCat, else the local one."""
    return config.catalog.url or local_catalog(config).url()


def catalog_password(config: BeamflowConfig) -> str:
    """The password the config names; for the local SciCat, the one generated for it."""
    if config.catalog.url:
        return config.catalog.password.resolve().get_secret_value()
    return local_catalog(config).password()
