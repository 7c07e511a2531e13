"""Endpoints: named storage locations with a root. Every path in an event is relative to one.

The one rule that protects everything outside beamflow's remit lives here: a relative path is resolved
against the endpoint root, and anything that lands outside the root (``..`` components, an absolute path,
a symlink anywhere along the way that points out) is refused with ``PathOutsideRoot``, never followed.
"""

from __future__ import annotations

import os
import stat
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Literal
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


class GlobusMount(BaseModel):
    """The same folder seen through a Globus collection, so Globus can copy to or from it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collection_id: UUID
    path: str = Field(description="The endpoint's root as an absolute path on the collection.")


class FilesystemEndpoint(_Endpoint):
    """A POSIX folder this host can read and write (local disk, NFS, BeeGFS)."""

    kind: Literal["filesystem"] = "filesystem"
    root: Path
    globus: GlobusMount | None = Field(
        default=None, description="Set when Globus endpoints copy to or from this folder (its collection)."
    )


class GlobusEndpoint(_Endpoint):
    """A Globus collection and a root path on it, reached with a service account."""

    kind: Literal["globus"] = "globus"
    collection_id: UUID
    root: str = Field(description="Absolute path on the collection under which beamflow works.")
    client_id: SecretRef
    client_secret: SecretRef
    poll_interval: Duration = Field(
        default=timedelta(seconds=10), description="The longest wait between two looks at a running task."
    )
    deadline: Duration = Field(
        default=timedelta(hours=12), description="A transfer not done by then is cancelled and fails the step."
    )
    inactive_limit: Duration = Field(
        default=timedelta(minutes=30),
        description="A task INACTIVE (paused, credentials expired) this long is cancelled and fails the step.",
    )


class TarArchiveEndpoint(_Endpoint):
    """A tape archive kept as tar bundles in a local folder: the embedded default for the archiver.

    Bundles are written once (temp name, fsync, rename) with an index beside them, and never changed; new
    scans of an archived cycle go to a new part. Nothing is copied here by the mover: only the archiver
    writes, and the pruner checks a bundle's index and listing when the archive is a hold's check endpoint.
    """

    kind: Literal["tar"] = "tar"
    root: Path


class SlurmSettings(BaseModel):
    """The ``#SBATCH`` directives of an HPSS job (the seed's: ``-q xfer -A als -C cron --licenses=SCRATCH``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    qos: str = "xfer"
    account: str = "als"
    constraint: str = "cron"
    licenses: str = "SCRATCH"
    time: str = Field(default="12:00:00", description="Walltime, HH:MM:SS.")


class SfapiAccess(BaseModel):
    """How beamflow reaches NERSC's Superfacility API: the API, and a client's id and key (from secrets)."""

    api_base_url: str = Field(description="The Superfacility API, e.g. https://api.nersc.gov/api/v1.2.")
    token_url: str = Field(description="The OAuth token endpoint of the API's client credentials.")
    client_id: SecretRef
    private_key: SecretRef = Field(description="The client's private key: PEM text, or a JSON key file's content.")
    machine: str = "perlmutter"


class HpssEndpoint(_Endpoint, SfapiAccess):
    """NERSC HPSS tape, reached by htar/hsi jobs submitted to Slurm through the Superfacility API."""

    kind: Literal["hpss"] = "hpss"
    root: str = Field(description="HPSS folder beamflow archives under, e.g. /home/a/alsdev/data_mover.")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    source_root: str | None = Field(
        default=None,
        description="Where the archive's source endpoint is at the site (default: its root path as configured).",
    )
    listing_dir: str | None = Field(
        default=None,
        description=(
            "A folder at the site (e.g. on $PSCRATCH) where listing jobs leave htar's and hsi's listings for "
            "beamflow to read back through the API. Without it the archive's bundles are known from the ledger "
            "only, and `beamflow archive ls --bundle` and whole-bundle restores are refused."
        ),
    )
    poll_interval: Duration = Field(default=timedelta(seconds=10), description="How often the job is polled.")
    job_timeout: Duration = Field(default=timedelta(hours=13), description="Give up on a job after this long.")


EndpointConfig = Annotated[
    FilesystemEndpoint | GlobusEndpoint | TarArchiveEndpoint | HpssEndpoint, Field(discriminator="kind")
]


def check_relative(relpath: str) -> tuple[str, ...]:
    """The components of ``relpath``, refusing absolute paths and ``..`` before touching the filesystem.

    Empty and ``.`` components are dropped, as a POSIX path would; plain string work, as the pruner checks
    every path of every hold.
    """
    if not relpath or "\0" in relpath:
        raise PathOutsideRoot(f"empty or NUL-containing path {relpath!r} refused")
    if relpath.startswith("/"):
        raise PathOutsideRoot(f"absolute path {relpath!r} refused: event paths are relative to the endpoint root")
    parts = tuple(part for part in relpath.split("/") if part and part != ".")
    if ".." in parts:
        raise PathOutsideRoot(f"path {relpath!r} refused: '..' would leave the endpoint root")
    return parts


#: How long a resolved root is reused. Resolving a root walks every folder above it; the pruner resolves
#: two roots per hold. A root re-pointed (a symlink retargeted) is seen again within this time.
ROOT_CACHE_SECONDS: Final = 1.0
_real_roots: dict[str, tuple[str, float]] = {}


def real_root(root: Path) -> str:
    """``root`` with every symlink resolved, reused for up to ``ROOT_CACHE_SECONDS``."""
    key = os.fspath(root)
    now = time.monotonic()
    cached = _real_roots.get(key)
    if cached is not None and now - cached[1] < ROOT_CACHE_SECONDS:
        return cached[0]
    resolved = os.path.realpath(key)
    _real_roots[key] = (resolved, now)
    return resolved


def resolve_inside(root: Path, relpath: str, endpoint: str = "endpoint") -> Path:
    """The real path of ``relpath`` under ``root``, refusing anything that escapes it (symlinks included).

    The parent folder is resolved through symlinks; the last component is resolved too when it exists, so
    a file that is itself a symlink pointing outside is refused as well.
    """
    parts = check_relative(relpath)
    base = real_root(root)
    # The root is free of symlinks, so only the components below it need looking at: one lstat each. The
    # first symlink met hands over to realpath for the whole path; a missing component ends the walk, as
    # nothing below it can be a symlink. Strings, not Path objects: this is the pruner's hot path.
    walked = base
    for i, part in enumerate(parts):
        walked = os.path.join(walked, part)  # noqa: PTH118
        try:
            mode = os.lstat(walked).st_mode
        except FileNotFoundError:
            return Path(os.path.join(walked, *parts[i + 1 :]))  # noqa: PTH118
        except OSError:
            break
        if stat.S_ISLNK(mode):
            break
    else:
        return Path(walked)
    candidate = os.path.realpath(os.path.join(base, *parts))  # noqa: PTH118
    if candidate != base and not candidate.startswith(base.rstrip(os.sep) + os.sep):
        raise PathOutsideRoot(
            f"path {relpath!r} on {endpoint} resolves to {candidate}, outside the root {base} "
            "(a symlink points out of the endpoint); refused"
        )
    return Path(candidate)
