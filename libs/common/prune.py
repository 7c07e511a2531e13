"""Prune controllers: one per storage kind, chosen by the endpoint's configuration.

A prune controller does the parts of the safety rule that need to touch storage: a fresh look at the
copy that makes deleting safe (still there, same size, same checksum where the storage can give one), a
look at the files about to be deleted (inside the root, still the files that were copied), and the
deletion itself, where a file that is already gone counts as deleted. The calls block; the pruner runs
them off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from beamflow.common.endpoints import (
    EndpointConfig,
    FilesystemEndpoint,
    GlobusEndpoint,
    HpssEndpoint,
    TarArchiveEndpoint,
)
from beamflow.common.errors import UnsupportedEndpoint
from beamflow.common.events import FileCopy


@dataclass(frozen=True)
class Deleted:
    files: list[str]
    """Every path that is now gone (deleted here, or already absent)."""
    freed_bytes: int
    already_gone: int


class PruneController(Protocol):
    def check_copy(
        self, name: str, endpoint: EndpointConfig, files: list[FileCopy], location: str | None = None
    ) -> list[str]:
        """Problems with the copy at ``endpoint`` (missing, wrong size, wrong checksum); empty if sound.
        ``location`` is where the ledger says the copy is when the storage needs more than the paths (the
        bundle that holds an archived copy)."""
        ...

    def check_source(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> list[str]:
        """Problems with deleting ``files`` on ``endpoint`` (outside the root, changed since the copy)."""
        ...

    def delete(self, name: str, endpoint: EndpointConfig, files: list[FileCopy]) -> Deleted: ...


def prune_controller_for(endpoint: EndpointConfig) -> PruneController:
    if isinstance(endpoint, FilesystemEndpoint):
        from beamflow.common.prune_fs import FilesystemPrune

        return FilesystemPrune()
    if isinstance(endpoint, TarArchiveEndpoint):
        from beamflow.common.prune_tar import TarArchivePrune

        return TarArchivePrune()
    if isinstance(endpoint, HpssEndpoint):
        from beamflow.common.prune_hpss import HpssPrune

        return HpssPrune()
    if isinstance(endpoint, GlobusEndpoint):
        from beamflow.common.prune_globus import GlobusPrune

        return GlobusPrune()
    raise UnsupportedEndpoint(
        f"no prune controller for {endpoint.kind} endpoints in this build of beamflow; "
        "nothing was deleted (remove the endpoint's retention rule or install a build with that transport)"
    )
