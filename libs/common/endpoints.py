"""Endpoints: named storage locations with a root. Every path in an event is relative to one.

The one rule that protects everything outside beamflow's remit lives here: a relative path is resolved
against the endpoint root, and anything that lands outside the root (``..`` components, an absolute path,
a symlink anywhere along the way that points out) is refused with ``PathOutsideRoot``, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from uuid import UUID

from beamflow.common.durations import Duration
from beamflow.common.errors import PathOutsideRoot
from beamflow.common.secrets import SecretRef
from pydantic import BaseModel, ConfigDict, Field


class RetentionRule(BaseModel):
    """How long a scan stays on an endpoint once a verified copy exists elsewhere, and where that copy is.

    The hold for this endpoint is placed when the mover verifies a copy at ``check_endpoint``; when it
    expires, the pruner deletes the scan here only if that copy still checks out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_for: Duration = Field(description="e.g. '180d', '35d', '1d', '12h' (days are fine here; NATS has none).")
    check_endpoint: str = Field(description="The endpoint whose verified copy makes deleting here safe.")


class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    leaves_facility: bool = Field(
        default=False,
        description="True for storage outside the facility (e.g. NERSC); export-controlled scans never go there.",
    )
    retention: RetentionRule | None = Field(
        default=None, description="Unset: beamflow never deletes anything from this endpoint."
    )


class FilesystemEndpoint(_Endpoint):
    """A POSIX folder this host can read and write (local disk, NFS, BeeGFS)."""

    kind: Literal["filesystem"] = "filesystem"
    root: Path


class GlobusEndpoint(_Endpoint):
    """A Globus collection and a root path on it, reached with a service account."""

    kind: Literal["globus"] = "globus"
    collection_id: UUID
    root: str = Field(description="Absolute path on the collection under which beamflow works.")
    client_id: SecretRef
    client_secret: SecretRef


EndpointConfig = Annotated[FilesystemEndpoint | GlobusEndpoint, Field(discriminator="kind")]


def check_relative(relpath: str) -> PurePosixPath:
    """Refuse absolute paths and ``..`` components before touching the filesystem."""
    if not relpath or "\0" in relpath:
        raise PathOutsideRoot(f"empty or NUL-containing path {relpath!r} refused")
    pure = PurePosixPath(relpath)
    if pure.is_absolute():
        raise PathOutsideRoot(f"absolute path {relpath!r} refused: event paths are relative to the endpoint root")
    if ".." in pure.parts:
        raise PathOutsideRoot(f"path {relpath!r} refused: '..' would leave the endpoint root")
    return pure


def resolve_inside(root: Path, relpath: str, endpoint: str = "endpoint") -> Path:
    """The real path of ``relpath`` under ``root``, refusing anything that escapes it (symlinks included).

    The parent folder is resolved through symlinks; the last component is resolved too when it exists, so
    a file that is itself a symlink pointing outside is refused as well.
    """
    pure = check_relative(relpath)
    real_root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(real_root.joinpath(*pure.parts)))
    if candidate != real_root and real_root not in candidate.parents:
        raise PathOutsideRoot(
            f"path {relpath!r} on {endpoint} resolves to {candidate}, outside the root {real_root} "
            "(a symlink points out of the endpoint); refused"
        )
    return candidate
