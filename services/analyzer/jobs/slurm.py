"""Jobs on the Slurm cluster of the analyzer's host: ``sbatch``, then ``scontrol``/``sacct`` until it ends.

The script's ``#SBATCH`` lines carry the walltime, so Slurm itself stops a job that runs over (state
TIMEOUT). A finished job stays visible to ``scontrol`` for ``MinJobAge``; after that ``sacct`` answers
where accounting runs. A job neither knows is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Final

from beamflow.analyzer.jobs.model import (
    JobLost,
    JobOutcome,
    JobSpec,
    JobSubmitFailed,
    JobWatch,
    SchedulerUnavailable,
    slurm_duration,
    slurm_end,
)
from beamflow.analyzer.jobs.workdir import read_summary, write_script
from beamflow.common.compute_config import SlurmCompute

_FIELD: Final = re.compile(r"(\w+)=(\S*)")
COMMAND_TIMEOUT: Final = 60.0


class SlurmJobs:
    def __init__(self, site: SlurmCompute) -> None:
        self.site = site
        self.env = dict(os.environ)
        if site.slurm_conf:
            self.env["SLURM_CONF"] = site.slurm_conf

    async def _command(self, *args: str) -> tuple[int, str, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except FileNotFoundError:
            raise JobSubmitFailed(f"{args[0]} is not on this host's PATH: is Slurm installed here?") from None
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout=COMMAND_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise JobSubmitFailed(f"{args[0]} did not answer within {COMMAND_TIMEOUT:.0f} s") from None
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def run(self, spec: JobSpec, watch: JobWatch) -> JobOutcome:
        script = await write_script(spec)
        # The folder exists here (the script was just written there): Slurm's own output goes beside it, not
        # into the analyzer's working directory.
        workdir = str(script.parent)
        code, out, err = await self._command(
            "sbatch", "--parsable", "-D", workdir, "-o", f"{workdir}/slurm-%j.out", str(script)
        )
        if code != 0:
            raise JobSubmitFailed(f"sbatch refused the job: {err.strip() or out.strip()}")
        job_id = out.strip().split(";")[0]
        await watch.submitted(job_id)
        return await self.follow(spec, job_id, watch)

    async def follow(self, spec: JobSpec, job_id: str, watch: JobWatch) -> JobOutcome:
        cancelled = False
        poll = self.site.poll_interval.total_seconds()
        while True:
            state, exit_code, runtime = await self._state(job_id)
            end = slurm_end(state)
            if end is not None:
                break
            if not cancelled and await watch.cancel_requested():
                cancelled = True
                await self._command("scancel", job_id)
            await asyncio.sleep(poll)
        status = int(exit_code.split(":")[0] or 0) if exit_code else 0
        summary = await read_summary(spec) if end == "completed" and status == 0 else ""
        return JobOutcome(job_id=job_id, end=end, exit_status=status, runtime_seconds=runtime, summary=summary)

    async def _state(self, job_id: str) -> tuple[str, str, float]:
        """(state, exit code 'N:S', run time in seconds) from scontrol, else sacct; JobLost if neither knows.

        Only scontrol's "Invalid job id" means the controller forgot the job; any other failure (a controller
        down or unreachable) says nothing about the job, and calling it lost would submit it a second time.
        """
        code, out, err = await self._command("scontrol", "show", "job", "-o", job_id)
        if code == 0 and out.strip():
            fields = dict(_FIELD.findall(out))
            return fields.get("JobState", ""), fields.get("ExitCode", ""), slurm_duration(fields.get("RunTime", ""))
        if "invalid job id" not in err.lower():
            said = err.strip() or out.strip() or f"exit status {code}"
            raise SchedulerUnavailable(f"Slurm did not say how job {job_id} is doing ({said}); the step is retried")
        with contextlib.suppress(JobSubmitFailed):
            code, out, _ = await self._command("sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode,Elapsed")
            rows = [line.split("|") for line in out.splitlines() if line.count("|") == 2]
            if code == 0 and rows:
                state, exit_code, elapsed = rows[-1]
                return state, exit_code, slurm_duration(elapsed)
        raise JobLost(f"Slurm job {job_id} is unknown to scontrol and sacct: it was lost; the step is retried")
