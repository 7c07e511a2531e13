"""Prune controller for tar archive endpoints: the fresh check of an archived copy.

A copy in the archive makes deleting elsewhere safe (NERSC CFS once a verified bundle holds it). The
check reads the bundle the ledger names, confirms the tar itself lists each file with the index's size and
checksum, and re-hashes the member bytes now. Nothing is ever deleted from an archive: bundles are
immutable, so ``check_source`` and ``delete`` refuse.
"""

from __future__ import annotations

from beamflow.common.archive_tar import LocalTarArchive
from beamflow.common.endpoints import EndpointConfig, TarArchiveEndpoint
from beamflow.common.errors import UnsupportedEndpoint
from beamflow.common.events import FileCopy
from beamflow.common.prune import Deleted


def _archive(name: str, endpoint: EndpointConfig) -> LocalTarArchive:
    if not isinstance(endpoint, TarArchiveEndpoint):
        raise UnsupportedEndpoint("TarArchivePrune works on tar archive endpoints only")
    return LocalTarArchive(endpoint.root, name)


class TarArchivePrune:
    def check_copy(
        self, name: str, endpoint: EndpointConfig, files: list[FileCopy], location: str | None = None
    ) -> list[str]:
        if location is None:
            return [f"the ledger names no bundle on {name} for this copy, so it cannot be checked"]
        return _archive(name, endpoint).check_members(location, [(f.path, f.size, f.checksum) for f in files])

    def check_source(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> list[str]:
        return [f"{name} is an archive: its bundles are never pruned (remove its retention rule)"]

    def delete(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> Deleted:
        raise UnsupportedEndpoint(f"{name} is an archive; beamflow never deletes from a bundle")
