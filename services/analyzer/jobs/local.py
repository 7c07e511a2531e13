"""Jobs as processes of the analyzer's machine: the embedded default compute site.

The script runs under ``bash`` in a session of its own, so a walltime or a cancel stops the whole process
group (the analysis and anything it started), first with SIGTERM and, after a grace period, SIGKILL. A
local job lives as long as the analyzer's handling of it: when the analyzer stops, it stops the job, and the
redelivered message runs it again. An analyzer killed outright cannot stop it; the next delivery finds the
job's process group by the id the registry holds (checked to be running in the job's folder, so a reused
pid is never signalled), stops it, and runs the job again: nothing can follow a process it did not start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Final

from beamflow.analyzer.jobs.model import JobEnd, JobLost, JobOutcome, JobSpec, JobWatch
from beamflow.analyzer.jobs.workdir import read_summary, write_script
from beamflow.common.compute_config import LocalCompute

#: How long a stopped job gets between SIGTERM and SIGKILL.
GRACE_SECONDS: Final = 5.0


class LocalJobs:
    def __init__(self, site: LocalCompute) -> None:
        self.site = site

    async def run(self, spec: JobSpec, watch: JobWatch) -> JobOutcome:
        script = await write_script(spec)
        # bash writes its own log: the analyzer holds no file open for the job's life.
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            'exec bash "$0" > job.out 2>&1',
            str(script),
            cwd=spec.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        job_id = f"local-{process.pid}"
        await watch.submitted(job_id)
        started = time.monotonic()
        deadline = started + spec.walltime.total_seconds()
        stopped: JobEnd | None = None
        poll = self.site.poll_interval.total_seconds()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(process.wait()), timeout=poll)
                if process.returncode is not None:
                    break
                if stopped is None and await watch.cancel_requested():
                    stopped = "cancelled"
                    await _stop(process)
                elif stopped is None and time.monotonic() >= deadline:
                    stopped = "timeout"
                    await _stop(process)
        except asyncio.CancelledError:
            # The analyzer is stopping: the job goes with it, and the redelivered message runs it again.
            await asyncio.shield(_stop(process))
            raise
        runtime = time.monotonic() - started
        code = process.returncode
        status = code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
        end: JobEnd = stopped or ("completed" if code == 0 else "failed")
        summary = await read_summary(spec) if end == "completed" else ""
        return JobOutcome(job_id=job_id, end=end, exit_status=status, runtime_seconds=runtime, summary=summary)

    async def follow(self, spec: JobSpec, job_id: str, watch: JobWatch) -> JobOutcome:
        pid = int(job_id.removeprefix("local-")) if job_id.startswith("local-") else 0
        if pid and _runs_in(pid, spec.workdir):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            if not await _gone(pid, GRACE_SECONDS):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                await _gone(pid, GRACE_SECONDS)
            raise JobLost(f"local job {job_id} outlived the analyzer that started it; it was stopped to run again")
        raise JobLost(f"local job {job_id} is no longer running; only the analyzer that started it saw how it ended")


def _runs_in(pid: int, workdir: str) -> bool:
    """True if ``pid`` leads its own process group and works in ``workdir``: the job, not a reused pid."""
    try:
        return os.getpgid(pid) == pid and Path(f"/proc/{pid}/cwd").readlink() == Path(workdir).resolve()
    except OSError:
        return False


async def _gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for a process that is not our child to end; True once it has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ended(pid):
            return True
        await asyncio.sleep(0.05)
    return False


def _ended(pid: int) -> bool:
    """True if ``pid`` is gone, or a zombie (ended; whoever adopted it has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout=GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
