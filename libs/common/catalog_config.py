"""Catalog settings: which SciCat to write to, and what each beamline catalogues and how.

Two levels, like NATS: ``catalog`` at the top says where SciCat is and how to log in (unset URL = the
local SciCat that ``beamflow up`` starts); ``beamlines.<bl>.catalog`` says which destination's copy makes
a dataset, which extractor reads the files, and who owns a scan when its files do not say.
"""

from __future__ import annotations

from datetime import timedelta

from beamflow.common.durations import Duration
from beamflow.common.secrets import SecretRef
from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatalogConnection(_Section):
    """Where SciCat is and how the ingestor logs in (the password only ever from the environment)."""

    url: str | None = Field(
        default=None,
        description="SciCat's API base, e.g. https://scicat.example.org/api/v3; unset = the local SciCat.",
    )
    username: str = Field(default="ingestor", description="The functional account the ingestor logs in as.")
    password: SecretRef = Field(
        default_factory=lambda: SecretRef(env="BEAMFLOW_SCICAT_PASSWORD"),
        description="Where the password comes from: {env: NAME} or {file_env: NAME}.",
    )
    timeout: Duration = Field(default=timedelta(seconds=30), description="Per HTTP request.")


class ProposalEntry(_Section):
    """Who a proposal belongs to, for scans whose files do not name their owner (7.3.3 headers often)."""

    principal_investigator: str
    owner: str | None = Field(default=None, description="Default: the principal investigator.")
    owner_email: str | None = None
    owner_group: str | None = Field(default=None, description="Default: the proposal id.")
    access_groups: list[str] = Field(default_factory=list)


class CatalogDefaults(_Section):
    """What a dataset gets when neither its files nor the proposal mapping say (each use is a warning)."""

    owner_group: str = Field(description="e.g. the beamline's staff group; SciCat requires an owner group.")
    contact_email: str = Field(description="Who answers questions about the data when the file names nobody.")
    principal_investigator: str = Field(description="Used only when neither the file nor the proposal names one.")
    access_groups: list[str] = Field(default_factory=list)


class BeamlineCatalog(_Section):
    """What one beamline catalogues: the copy at ``destination`` becomes a raw dataset."""

    destination: str = Field(description="The endpoint whose verified copy is catalogued (its scan.moved).")
    read_from: str | None = Field(
        default=None,
        description="Filesystem endpoint the ingestor reads the files from; default: the destination itself.",
    )
    technique: str = Field(description="The metadata extractor: 'saxs-waxs-733' or 'tomography-832'.")
    creation_location: str = Field(description="SciCat's creationLocation, e.g. '/ALS/7.3.3'.")
    instrument: str | None = None
    defaults: CatalogDefaults
    proposals: dict[str, ProposalEntry] = Field(
        default_factory=dict, description="Proposal id -> owner, for files that name a proposal but no owner."
    )
    derived_software: list[str] = Field(
        default_factory=lambda: ["beamflow-analysis"],
        description="usedSoftware of derived datasets made from this beamline's analysis outputs.",
    )
