"""The job script every compute site runs, and the result line it leaves.

The script is plain bash so that any site can run it: the site's ``#SBATCH`` lines (Slurm sites), the
beamline's ``setup`` lines (module loads, a container launcher), then the configured command with
``--output DIR`` and the staged inputs. The command's last stdout line is its result (``AnalysisSummary``);
it is kept only if the command exits 0, and renamed into place so a half-written summary is never read.
Every path is shell-quoted.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from beamflow.analyzer.jobs.model import JobSpec, slurm_walltime
from beamflow.common.compute_config import AnalysisPolicy, ComputeSiteConfig, LocalCompute, SlurmCompute
from beamflow.common.endpoints import check_relative
from beamflow.common.errors import PermanentError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class AnalysisSummary(BaseModel):
    """The JSON line an analysis prints last: its outputs (relative to ``--output``) and what it used."""

    model_config = ConfigDict(extra="allow")

    analysis: str
    outputs: list[str] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    software: dict[str, str] = Field(default_factory=dict)

    @field_validator("outputs")
    @classmethod
    def _inside(cls, outputs: list[str]) -> list[str]:
        for path in outputs:
            check_relative(path)
        return outputs


class BadSummary(PermanentError):
    """The analysis exited 0 but its result line is missing or not what the contract says."""


def parse_summary(text: str, job_id: str) -> AnalysisSummary:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadSummary(f"job {job_id} exited 0 but printed no result line; check the analysis command")
    try:
        return AnalysisSummary.model_validate(json.loads(lines[-1]))
    except (ValueError, ValidationError) as exc:
        raise BadSummary(
            f"job {job_id}'s result line is not an analysis summary ({exc}); got {lines[-1][:200]!r}"
        ) from None


def render(
    policy: AnalysisPolicy,
    site: ComputeSiteConfig,
    *,
    job_name: str,
    workdir: str,
    output_dir: str,
    inputs: list[str],
) -> JobSpec:
    """The job for one scan: ``inputs`` and ``output_dir`` are site paths."""
    q = shlex.quote
    summary = f"{workdir}/summary.json"
    # The analyzer's own interpreter where the job runs on its host (or shares its software); a remote
    # site's `setup` lines provide a `python3`.
    python = sys.executable if isinstance(site, LocalCompute | SlurmCompute) else "python3"
    command = [python if word == "{python}" else word for word in policy.command]
    lines = ["#!/bin/bash"]
    if not isinstance(site, LocalCompute):
        lines += [
            f"#SBATCH -J {q(job_name)}",
            f"#SBATCH -t {slurm_walltime(policy.walltime)}",
            *site.slurm.lines(),
        ]
    # The job folder may not exist yet at a remote site, and Slurm cannot open an output file in a folder that
    # does not exist: the script makes it and sends its own output there.
    lines += [
        "set -u",
        f"mkdir -p {q(workdir)} && cd {q(workdir)} || exit 1",
        "exec >> job.out 2>&1",
        *policy.setup,
        f"mkdir -p {q(output_dir)} || exit 1",
        f"{' '.join(q(w) for w in command)} --output {q(output_dir)} {' '.join(q(i) for i in inputs)} "
        f"> {q(summary)}.part",
        "status=$?",
        f'[ "$status" -eq 0 ] && mv {q(summary)}.part {q(summary)}',
        'exit "$status"',
    ]
    return JobSpec(
        name=job_name, script="\n".join(lines) + "\n", workdir=workdir, walltime=policy.walltime, summary=summary
    )
