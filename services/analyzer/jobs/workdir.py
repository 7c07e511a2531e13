"""The job folder on a filesystem the analyzer shares with its jobs (local and host Slurm sites)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from beamflow.analyzer.jobs.model import JobSpec, JobSubmitFailed


def _write_script(spec: JobSpec) -> Path:
    workdir = Path(spec.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / "job.sh"
        script.write_text(spec.script)
    except OSError as exc:
        raise JobSubmitFailed(f"cannot prepare the job folder {workdir}: {exc.strerror or exc}") from None
    return script


async def write_script(spec: JobSpec) -> Path:
    """The job's folder made and its script written there; the script's path."""
    return await asyncio.to_thread(_write_script, spec)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


async def read_summary(spec: JobSpec) -> str:
    """The summary the job left ("" when there is none: the caller reports that)."""
    return await asyncio.to_thread(_read, spec.summary)
