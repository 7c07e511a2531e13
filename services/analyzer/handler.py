"""The analyzer's work: on a verified copy at a beamline's analysis source, run its analysis job and bring the
outputs back.

One scan, one job, in this order (each step verified before the next):

1. stage the scan's input files into the compute site's ``scratch`` endpoint (a transfer controller, so a
   Globus scratch at NERSC is staged as any copy is);
2. run the job script (``script.render``) with a job controller, recording its id in the job registry so
   ``beamflow job cancel`` reaches it; the runtime's heartbeat keeps the message while it runs; a redelivered
   message follows the job an earlier delivery submitted (running, or done but not yet brought back) instead of
   submitting a second one;
3. a non-zero exit, a walltime passed, an operator's cancel or a missing result line fail the step (a
   dead letter naming the job's log); a lost job is retried;
4. bring the outputs the job names back to ``output_endpoint`` (verified copies), publish ``scan.analyzed``,
   and place the retention hold the outputs' copy makes possible on the scratch endpoint;
5. remove the staged inputs from scratch: they are a working copy of a verified copy, checked unchanged
   before deletion. Outputs stay in scratch until their hold (if the scratch has a retention rule) expires.
"""

from __future__ import annotations

import asyncio
import fnmatch
from pathlib import PurePosixPath

from beamflow.analyzer.jobs import controller_for as job_controller_for
from beamflow.analyzer.jobs.model import JobController, JobFailed, JobLost, JobOutcome, JobSpec, OutputsGone
from beamflow.analyzer.registry import JobEntry, JobRegistry
from beamflow.analyzer.script import parse_summary, render
from beamflow.common import holds
from beamflow.common.compute_config import AnalysisPolicy
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import EndpointConfig, FilesystemEndpoint, GlobusEndpoint
from beamflow.common.errors import PermanentError, SourceMissing
from beamflow.common.events import FileCopy, ScanAnalyzed, ScanMoved
from beamflow.common.prune import prune_controller_for
from beamflow.common.service import Context
from beamflow.common.transfer import controller_for as transfer_controller_for

#: The job folders, under the scratch endpoint's root (hidden: they are beamflow's, not the scan's).
JOBS_FOLDER = ".beamflow-jobs"
#: The outputs, under the scratch and the output endpoints' roots: analysis/<name>/<scan path>/...
OUTPUTS_FOLDER = "analysis"


def site_root(endpoint: EndpointConfig) -> str:
    """The endpoint's root as a job at the site sees it."""
    if isinstance(endpoint, FilesystemEndpoint):
        return str(endpoint.root).rstrip("/")
    if isinstance(endpoint, GlobusEndpoint):
        return endpoint.root.rstrip("/")
    raise PermanentError(f"a {endpoint.kind} endpoint cannot hold a job's files; use a filesystem or Globus one")


class _Watch:
    """The registry's side of a job: where its id goes, where a cancel request is found, and how far it got."""

    def __init__(self, registry: JobRegistry, entry: JobEntry) -> None:
        self.registry = registry
        self.entry = entry

    async def submitted(self, job_id: str) -> None:
        await self._record(job_id=job_id, state="running")

    async def cancel_requested(self) -> bool:
        current = await self.registry.get(self.entry.scan_id, self.entry.analysis)
        return current is not None and current.cancel_requested

    async def bringing_back(self, end: str) -> None:
        """The job succeeded; until its outputs are back, a later delivery follows it instead of running it again."""
        await self._record(state="bringing_back", end=end)

    async def ended(self, end: str) -> None:
        await self._record(state="ended", end=end)

    async def _record(self, **change: str) -> None:
        self.entry = self.entry.model_copy(update=change)
        await self.registry.put(self.entry)


class Analyzer:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config

    async def on_moved(self, ctx: Context, event: ScanMoved) -> None:
        beamline = self.config.beamlines.get(event.beamline)
        policy = beamline.analysis if beamline is not None else None
        if policy is None or event.destination_endpoint != policy.source:
            return
        if beamline is not None and beamline.is_flight_check(event.scan_path):
            return  # a flight check's test scan: nothing to analyse
        inputs = [f for f in event.files if _is_input(f.path, policy)]
        if not inputs:
            ctx.log.info("no input files for the analysis in this scan", extra={"analysis": policy.name})
            return
        site = self.config.compute[policy.site]
        scratch = self.config.endpoints[site.scratch]
        root = site_root(scratch)
        scan_key = event.scan_path or event.scan_id
        prefix = f"{OUTPUTS_FOLDER}/{policy.name}/{scan_key}"
        registry = await JobRegistry.open(ctx.js)
        earlier = await registry.get(event.scan_id, policy.name)
        if earlier is not None and earlier.state != "ended" and earlier.site == policy.site:
            entry = earlier  # a redelivery: keep the job an earlier delivery submitted, and any cancel asked since
        else:
            entry = JobEntry(scan_id=event.scan_id, beamline=event.beamline, analysis=policy.name, site=policy.site)
            await registry.put(entry)
        watch = _Watch(registry, entry)
        staged = await self._stage(policy, site.scratch, [f.path for f in inputs])
        try:
            spec = render(
                policy,
                site,
                job_name=f"beamflow-{policy.name}-{event.scan_id}"[:64],
                workdir=f"{root}/{JOBS_FOLDER}/{policy.name}/{event.scan_id}",
                output_dir=f"{root}/{prefix}",
                inputs=[f"{root}/{f.path}" for f in inputs],
            )
            ctx.log.info("analysis job starting", extra={"analysis": policy.name, "site": policy.site})
            outcome = await _run_or_follow(job_controller_for(site), spec, watch, ctx)
            try:
                _check(outcome, policy, spec.workdir)
                summary = parse_summary(outcome.summary, outcome.job_id)
            except PermanentError:
                await watch.ended(outcome.end)
                raise
            await watch.bringing_back(outcome.end)
            try:
                outputs = await self._bring_back(policy, site.scratch, [f"{prefix}/{o}" for o in summary.outputs])
            except SourceMissing as exc:
                # Scratch was purged (NERSC purges old files) or cleaned by hand: following this job again can only
                # fail the same way, so its entry ends and the replay runs the analysis afresh.
                await watch.ended(outcome.end)
                raise OutputsGone(
                    f"the outputs of job {outcome.job_id} are not in {site.scratch} (purged, or never written: {exc}); "
                    "replay the dead letter to run the analysis again"
                ) from exc
        except asyncio.CancelledError:
            staged = []  # the analyzer is stopping and the job may still run at the site: its inputs stay
            raise
        finally:
            if staged:
                await self._unstage(site.scratch, staged, ctx)
        await ctx.publish(
            ScanAnalyzed(
                scan_id=event.scan_id,
                beamline=event.beamline,
                compute_site=policy.site,
                job_id=outcome.job_id,
                exit_status=outcome.exit_status,
                runtime_seconds=outcome.runtime_seconds,
                output_endpoint=policy.output_endpoint,
                outputs=outputs,
                analysis=policy.name,
                software=summary.software,
                parameters=summary.parameters,
            )
        )
        await holds.place_after_copy(
            ctx.js,
            ctx.publish,
            self.config,
            event.scan_id,
            event.beamline,
            {site.scratch},
            policy.output_endpoint,
            outputs,
        )
        await watch.ended(outcome.end)
        ctx.log.info(
            "analysis done",
            extra={"job_id": outcome.job_id, "runtime_s": round(outcome.runtime_seconds, 2), "outputs": len(outputs)},
        )

    async def _stage(self, policy: AnalysisPolicy, scratch: str, paths: list[str]) -> list[FileCopy]:
        """Copy the inputs into scratch (verified); the copies made, none when scratch is the source itself."""
        if scratch == policy.source:
            return []
        source_ep, scratch_ep = self.config.endpoints[policy.source], self.config.endpoints[scratch]
        result = await transfer_controller_for(source_ep, scratch_ep).transfer(
            policy.source, source_ep, scratch, scratch_ep, paths
        )
        return list(result.files)

    async def _bring_back(self, policy: AnalysisPolicy, scratch: str, paths: list[str]) -> list[FileCopy]:
        if scratch == policy.output_endpoint:
            raise PermanentError("an analysis's output_endpoint must differ from its site's scratch endpoint")
        scratch_ep, output_ep = self.config.endpoints[scratch], self.config.endpoints[policy.output_endpoint]
        result = await transfer_controller_for(scratch_ep, output_ep).transfer(
            scratch, scratch_ep, policy.output_endpoint, output_ep, paths
        )
        return list(result.files)

    async def _unstage(self, scratch: str, staged: list[FileCopy], ctx: Context) -> None:
        endpoint = self.config.endpoints[scratch]
        controller = prune_controller_for(endpoint)
        problems = await asyncio.to_thread(controller.check_source, scratch, endpoint, staged)
        if problems:
            ctx.log.warning("staged inputs left in scratch: " + "; ".join(problems), extra={"endpoint": scratch})
            return
        await asyncio.to_thread(controller.delete, scratch, endpoint, staged)


async def _run_or_follow(controller: JobController, spec: JobSpec, watch: _Watch, ctx: Context) -> JobOutcome:
    """Follow the job an earlier delivery submitted, if there is one; else submit ``spec``.

    An analyzer that stopped while its job ran leaves the job's id in the registry; the site keeps running it,
    and submitting again would spend the allocation twice and race two jobs for one output folder. A job that
    succeeded but whose outputs were not brought back (a retry, or a replay once the output endpoint is fixed)
    is followed too: the site still knows how it ended, and its outputs are still in scratch.
    """
    earlier = watch.entry.job_id if watch.entry.state in ("running", "bringing_back") else None
    if earlier is not None:
        try:
            outcome = await controller.follow(spec, earlier, watch)
        except JobLost as exc:
            ctx.log.warning(f"{exc}; submitting the job again", extra={"job_id": earlier})
        else:
            ctx.log.info("followed the job an earlier delivery submitted", extra={"job_id": earlier})
            return outcome
    return await controller.run(spec, watch)


def _is_input(path: str, policy: AnalysisPolicy) -> bool:
    if not policy.suffixes:
        return True
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatch(name, f"*{suffix}") for suffix in policy.suffixes)


def _check(outcome: JobOutcome, policy: AnalysisPolicy, workdir: str) -> None:
    where = f"job {outcome.job_id} at {policy.site}"
    log = f"its log is in {workdir}"
    if outcome.end == "timeout":
        raise JobFailed(
            f"{where} ran past its walltime ({policy.walltime}) and was stopped; {log}. Raise the beamline's "
            "analysis.walltime if the scan needs longer, then replay the dead letter"
        )
    if outcome.end == "cancelled":
        raise JobFailed(f"{where} was cancelled by an operator; replay the dead letter to run it again")
    if outcome.end != "completed" or outcome.exit_status != 0:
        raise JobFailed(
            f"{where} failed with exit status {outcome.exit_status} after {outcome.runtime_seconds:.1f} s "
            f"(the site says {outcome.end}); {log} (job.out)"
        )
