"""Jobs on a NERSC machine through the Superfacility API (sfapi-client, unmodified).

The script goes up as text; the job is polled with squeue and, once it leaves the queue, sacct (what
sfapi-client's ``update`` does). A job the API answers "Job not found" for is lost. The summary file is read
back through the API's download utility, in the same session.
"""

from __future__ import annotations

import asyncio
from typing import Any

from beamflow.analyzer.jobs.model import (
    JobEnd,
    JobLost,
    JobOutcome,
    JobSpec,
    JobSubmitFailed,
    JobWatch,
    slurm_duration,
    slurm_end,
)
from beamflow.common.compute_config import NerscCompute
from beamflow.common.sfapi_session import download_text, sfapi_compute


class NerscJobs:
    def __init__(self, site: NerscCompute) -> None:
        self.site = site

    async def run(self, spec: JobSpec, watch: JobWatch) -> JobOutcome:
        return await self._run(spec, watch, None)

    async def follow(self, spec: JobSpec, job_id: str, watch: JobWatch) -> JobOutcome:
        return await self._run(spec, watch, job_id)

    async def _run(self, spec: JobSpec, watch: JobWatch, earlier: str | None) -> JobOutcome:
        """Submit ``spec`` (or, given ``earlier``, find that job again) and follow it to its end."""
        from sfapi_client import SfApiError

        try:
            async with sfapi_compute(self.site, self.site.poll_interval) as machine:
                if earlier is None:
                    try:
                        job = await machine.submit_job(spec.script)
                    except SfApiError as exc:
                        raise JobSubmitFailed(f"NERSC did not take the job: {exc}") from None
                    await watch.submitted(str(job.jobid))
                else:
                    try:
                        job = await machine.job(earlier)
                    except SfApiError as exc:
                        if "not found" not in str(exc).lower():
                            raise  # the API failed, not the job: retried, and followed again
                        raise JobLost(f"NERSC no longer knows Slurm job {earlier} ({exc})") from None
                job_id = str(job.jobid)
                try:
                    end, accounting = await self._follow(machine, job, watch)
                except SfApiError as exc:
                    if "not found" in str(exc).lower():
                        raise JobLost(f"NERSC lost Slurm job {job_id} ({exc}); the step is retried") from None
                    raise
                status = int(str(accounting.exitcode or "0:0").split(":")[0])
                summary = ""
                if end == "completed" and status == 0:
                    summary = await download_text(machine, spec.summary)
        except SfApiError as exc:
            raise JobSubmitFailed(f"NERSC's API said: {exc}; retrying") from None
        runtime = slurm_duration(str(accounting.elapsed or ""))
        return JobOutcome(job_id=job_id, end=end, exit_status=status, runtime_seconds=runtime, summary=summary)

    async def _follow(self, machine: Any, job: Any, watch: JobWatch) -> tuple[JobEnd, Any]:
        cancelled = False
        poll = self.site.poll_interval.total_seconds()
        while True:
            await job.update()
            end = slurm_end(str(getattr(job.state, "value", job.state) or ""))
            if end is not None:
                return end, await machine.job(job.jobid)
            if not cancelled and await watch.cancel_requested():
                cancelled = True
                await job.cancel()
            await asyncio.sleep(poll)
