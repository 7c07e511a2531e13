"""The archive vocabulary, shared by the archiver (planner, backends) and the pruner (which checks archived
copies): what goes into which bundle, and what a backend found or wrote. Plain data (pydantic), no I/O.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Cycle(_Model):
    """An ALS beam cycle: 1 is Jan 1 to Jul 15, 2 is Jul 16 to Dec 31 (by file mtime)."""

    year: int
    number: Literal[1, 2]

    @property
    def label(self) -> str:
        return f"{self.year}-{self.number}"


class MemberFile(_Model):
    """One file to archive, relative to the root of the endpoint the archive is made from."""

    path: str
    size: int = Field(ge=0)
    mtime: float
    scan_id: str
    checksum: str | None = None


class BundlePlan(_Model):
    """One archive object to write: an htar bundle of many files, or one large file sent alone with hsi."""

    beamline: str
    proposal: str
    cycle: Cycle
    directory: str = Field(description="'<beamline>/raw/<proposal>', relative to the archive's root.")
    name: str = Field(description="'<proposal>_<YYYY>-<cycle>.tar', '..._partN.tar', or the large file's name.")
    kind: Literal["htar", "hsi"]
    members: list[MemberFile] = Field(min_length=1)

    @property
    def path(self) -> str:
        return f"{self.directory}/{self.name}"

    @property
    def size(self) -> int:
        return sum(m.size for m in self.members)


class ExistingBundle(_Model):
    """A bundle already in the archive (bundles are immutable: new scans of its cycle go to a new part)."""

    directory: str
    name: str
    kind: Literal["htar", "hsi"]
    members: list[str]


class MemberEntry(_Model):
    """One member as the archive lists it back."""

    name: str
    size: int


class BundleState(_Model):
    """What the archive holds under a bundle's path."""

    state: Literal["absent", "verified", "unverified"]
    members: list[MemberEntry] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="Why an existing bundle does not verify.")
