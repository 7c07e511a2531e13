"""What every job controller takes and gives: the job to run, how it is watched, and how it ended.

A controller submits the script, reports the job id as soon as it has one (so an operator can cancel), polls
until the job ends, stops it when asked or when its walltime passes, and reads back the small summary file
the script leaves. How the job ended is data (``JobOutcome``); only a job the site no longer knows raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from beamflow.common.errors import PermanentError, TransientError

JobEnd = Literal["completed", "failed", "timeout", "cancelled"]


@dataclass(frozen=True)
class JobSpec:
    name: str
    script: str
    workdir: str
    """The job's folder at the site (script, its log, the summary): under the scratch endpoint's root."""
    walltime: timedelta
    summary: str
    """The site path of the file the script leaves its result line in, read back after a clean exit."""


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    end: JobEnd
    exit_status: int
    runtime_seconds: float
    summary: str
    """The summary file's text ("" unless the job completed with exit status 0)."""


class JobWatch(Protocol):
    """What the controller tells and asks while a job runs."""

    async def submitted(self, job_id: str) -> None:
        """The site accepted the job (recorded so that ``beamflow job cancel`` can find it)."""
        ...

    async def cancel_requested(self) -> bool:
        """True once an operator asked to cancel the job."""
        ...


class JobController(Protocol):
    async def run(self, spec: JobSpec, watch: JobWatch) -> JobOutcome:
        """Submit ``spec``, follow it to its end (cancelling it when ``watch`` asks), and say how it ended."""
        ...

    async def follow(self, spec: JobSpec, job_id: str, watch: JobWatch) -> JobOutcome:
        """Follow ``job_id``, a job of ``spec`` an earlier delivery submitted, to its end, as ``run`` does.

        Raises ``JobLost`` when the job cannot be followed: the caller then submits it again.
        """
        ...


class JobLost(TransientError):
    """The site no longer knows the job (it was never recorded, or it was forgotten): its outcome is unknown."""


class SchedulerUnavailable(TransientError):
    """The site's scheduler did not say how a job is doing (its controller is down or unreachable): the job
    is not lost, so the retry follows it again rather than submitting another."""


class JobSubmitFailed(TransientError):
    """The site did not take the job (the scheduler or the API refused or was unreachable)."""


class JobFailed(PermanentError):
    """The job ran and failed: a non-zero exit, its walltime passed, or an operator cancelled it."""


class OutputsGone(PermanentError):
    """The job succeeded, but its outputs left scratch before they were brought back; only a new run makes them."""


def slurm_end(state: str) -> JobEnd | None:
    """A Slurm job state as how the job ended; None while it has not ended."""
    state = state.split()[0].upper() if state else ""
    if state == "COMPLETED":
        return "completed"
    if state in ("TIMEOUT", "DEADLINE"):
        return "timeout"
    if state.startswith("CANCELLED"):
        return "cancelled"
    if state in ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"):
        return "failed"
    return None


def slurm_walltime(walltime: timedelta) -> str:
    """Slurm's ``-t`` value for ``walltime``: whole minutes, rounded up (Slurm's limits are in minutes)."""
    minutes = max(1, -(-int(walltime.total_seconds()) // 60))
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def slurm_duration(text: str) -> float:
    """Seconds of a Slurm duration ``[D-]HH:MM:SS`` (or ``MM:SS``); 0 for anything else."""
    days, _, clock = text.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        seconds = 0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds + int(days or 0) * 86400
    except ValueError:
        return 0.0
