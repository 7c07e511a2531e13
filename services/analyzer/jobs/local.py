"""Jobs as processes of the analyzer's machine: the embedded default compute site.

The script runs under ``bash`` in a session of its own, so a walltime or a cancel stops the whole process
group (the analysis and anything it started), first with SIGTERM and, after a grace period, SIGKILL. A
local job lives as long as the analyzer process: if the analyzer dies, the job dies with it and the
message is redelivered, which runs it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Final

from beamflow.analyzer.jobs.model import JobEnd, JobOutcome, JobSpec, JobWatch
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
        runtime = time.monotonic() - started
        code = process.returncode
        status = code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
        end: JobEnd = stopped or ("completed" if code == 0 else "failed")
        summary = await read_summary(spec) if end == "completed" else ""
        return JobOutcome(job_id=job_id, end=end, exit_status=status, runtime_seconds=runtime, summary=summary)


async def _stop(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), timeout=GRACE_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
