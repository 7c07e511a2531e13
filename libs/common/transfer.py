"""Transfer controllers: one per pair of storage kinds, chosen by the endpoints' configuration.

A controller copies a scan's files from one endpoint to another and returns verified copies only: every
``FileCopy`` it returns has been checked at the destination (size and checksum). A controller never leaves
a partial file under a final name, and a destination that already holds a verified copy is not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from beamflow.common.endpoints import EndpointConfig, FilesystemEndpoint, GlobusEndpoint
from beamflow.common.errors import UnsupportedEndpoint
from beamflow.common.events import FileCopy


@dataclass(frozen=True)
class TransferResult:
    files: list[FileCopy]
    copied_files: int
    """Files actually written; 0 when the destination already held a verified copy of every file."""
    copied_bytes: int
    external_id: str | None = None
    rate_bytes_per_second: float | None = None
    """The transfer service's own measure of its speed (Globus: effective_bytes_per_second), when it gives one."""

    @property
    def copied(self) -> bool:
        return self.copied_files > 0


class TransferController(Protocol):
    async def transfer(
        self,
        source_name: str,
        source: EndpointConfig,
        destination_name: str,
        destination: EndpointConfig,
        paths: list[str],
    ) -> TransferResult:
        """Copy ``paths`` (relative to both roots) and verify them; raise a BeamflowError on failure."""
        ...


def controller_for(source: EndpointConfig, destination: EndpointConfig) -> TransferController:
    if isinstance(source, FilesystemEndpoint) and isinstance(destination, FilesystemEndpoint):
        from beamflow.common.transfer_fs import FilesystemTransfer

        return FilesystemTransfer()
    if isinstance(source, GlobusEndpoint) or isinstance(destination, GlobusEndpoint):
        from beamflow.common.transfer_globus import GlobusTransfer

        return GlobusTransfer()
    raise UnsupportedEndpoint(
        f"no transfer controller for {source.kind} -> {destination.kind} in this build of beamflow; "
        "use filesystem or Globus endpoints"
    )
