"""Prune controller for HPSS endpoints: the fresh check of a copy archived on tape at NERSC.

The check is a Slurm job (``htar -tf`` of the bundle the ledger names, compared with the hold's files and
sizes), submitted with sfapi-client; it runs in the pruner's worker thread with an event loop of its own.
Nothing is ever deleted from HPSS by the pruner.
"""

from __future__ import annotations

import asyncio

from beamflow.common.archive_hpss import HpssArchive
from beamflow.common.endpoints import EndpointConfig, HpssEndpoint
from beamflow.common.errors import BeamflowError, UnsupportedEndpoint
from beamflow.common.events import FileCopy
from beamflow.common.prune import Deleted


class HpssPrune:
    def check_copy(
        self, name: str, endpoint: EndpointConfig, files: list[FileCopy], location: str | None = None
    ) -> list[str]:
        if not isinstance(endpoint, HpssEndpoint):
            raise UnsupportedEndpoint("HpssPrune works on hpss endpoints only")
        if location is None:
            return [f"the ledger names no bundle on {name} for this copy, so it cannot be checked"]
        archive = HpssArchive(endpoint, name, endpoint.source_root or "/")
        try:
            return asyncio.run(archive.check_members(location, [(f.path, f.size) for f in files]))
        except BeamflowError as exc:
            return [f"the check of {location} on {name} could not run: {exc}"]

    def check_source(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> list[str]:
        return [f"{name} is an archive: its bundles are never pruned (remove its retention rule)"]

    def delete(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> Deleted:
        raise UnsupportedEndpoint(f"{name} is an archive; beamflow never deletes from a bundle")
