"""Where analysis runs (compute sites) and what a beamline runs there (its analysis policy).

A compute site is one of three kinds, all with the same shape to the analyzer: a ``scratch`` endpoint the
scan is staged into and the outputs are written under, and a way to run a job script.

- ``local``: a process on the analyzer's machine (the embedded default);
- ``slurm``: ``sbatch`` on the analyzer's host, followed with ``scontrol``/``sacct``;
- ``nersc``: a Slurm job submitted through NERSC's Superfacility API with sfapi-client.

The job's command is configuration: a site swaps the example analyses for its real reconstruction by
changing ``command`` and ``setup`` (module loads, a container launcher), not code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from beamflow.common.durations import Duration
from beamflow.common.endpoints import SfapiAccess
from pydantic import BaseModel, ConfigDict, Field


class _Site(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    scratch: str = Field(description="The endpoint the scan is staged into; outputs are written under it too.")
    poll_interval: Duration = Field(default=timedelta(seconds=10), description="How often a running job is polled.")


class LocalCompute(_Site):
    """Jobs are processes of the analyzer's machine (bash runs the script; the walltime is enforced here)."""

    kind: Literal["local"] = "local"
    poll_interval: Duration = Field(default=timedelta(milliseconds=200))


class SlurmDirectives(BaseModel):
    """``#SBATCH`` lines of an analysis job; the walltime comes from the beamline's analysis policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: list[str] = Field(default_factory=list, description="More directives, e.g. '--gpus=1'.")

    def lines(self) -> list[str]:
        pairs = [("-p", self.partition), ("-A", self.account), ("-q", self.qos), ("-C", self.constraint)]
        return [f"#SBATCH {flag} {value}" for flag, value in pairs if value] + [f"#SBATCH {x}" for x in self.extra]


class SlurmCompute(_Site):
    """Jobs go to the Slurm cluster the analyzer's host submits to (``sbatch`` on its PATH)."""

    kind: Literal["slurm"] = "slurm"
    slurm: SlurmDirectives = Field(default_factory=SlurmDirectives)
    slurm_conf: str | None = Field(default=None, description="SLURM_CONF for the commands (unset: Slurm's default).")


class NerscCompute(_Site, SfapiAccess):
    """Jobs go to a NERSC machine through the Superfacility API; ``scratch`` is usually a Globus endpoint on
    $PSCRATCH, whose ``root`` is the folder as the job sees it."""

    kind: Literal["nersc"] = "nersc"
    slurm: SlurmDirectives = Field(
        default_factory=lambda: SlurmDirectives(qos="regular", constraint="cpu", account="als")
    )


ComputeSiteConfig = Annotated[LocalCompute | SlurmCompute | NerscCompute, Field(discriminator="kind")]


class AnalysisPolicy(BaseModel):
    """What a beamline runs on each scan once a verified copy is at ``source``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="Names the outputs' folder and the job.")
    site: str = Field(description="A compute site of this configuration.")
    source: str = Field(description="The endpoint whose verified copy is analysed (a destination of the beamline).")
    output_endpoint: str = Field(description="Where the outputs are brought back to (a filesystem endpoint).")
    command: list[str] = Field(
        min_length=1,
        description="The job's command; `--output DIR` and the staged input files are appended. '{python}' "
        "stands for the analyzer's own interpreter (local and host Slurm sites).",
    )
    setup: list[str] = Field(
        default_factory=list, description="Shell lines before the command: module loads, a container launcher."
    )
    walltime: Duration = Field(default=timedelta(hours=1), description="The job is stopped (and fails) after this.")
    suffixes: list[str] = Field(
        default_factory=list, description="Only the scan's files with these suffixes are inputs (empty: every file)."
    )
