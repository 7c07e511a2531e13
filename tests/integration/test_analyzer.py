"""The analyzer on the local compute site: real processes, real files, a real nats-server.

The job runs a small analysis script (the sum of its inputs' sizes) that can also fail or hang, so each way
a job ends is seen: done, a non-zero exit, past its walltime, cancelled by an operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from beamflow.analyzer.jobs.local import LocalJobs
from beamflow.analyzer.jobs.model import JobLost, JobSpec
from beamflow.analyzer.registry import JobRegistry
from beamflow.analyzer.service import build as build_analyzer
from beamflow.common.compute_config import AnalysisPolicy, ComputeSiteConfig, LocalCompute
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import FilesystemEndpoint, RetentionRule
from beamflow.common.events import ScanAnalyzed
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness, running, test_config, wait_for_record
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from nats.js import JetStreamContext
from tests.integration.test_mover import announce, write

pytestmark = pytest.mark.timeout(120)

SIZES = """
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--output", required=True)
parser.add_argument("--mode", default="ok")
parser.add_argument("inputs", nargs="+")
args = parser.parse_args()
if args.mode == "fail":
    print("the analysis could not read its input", file=sys.stderr)
    sys.exit(3)
if args.mode == "hang":
    time.sleep(600)
if args.mode == "gate":  # runs until the test opens the gate: a job that is running for as long as it needs
    while not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "gate")):
        time.sleep(0.05)
total = sum(os.path.getsize(path) for path in args.inputs)
os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "sizes.txt"), "w") as out:
    out.write(f"{total}\\n")
print("progress noise before the result line")
print(json.dumps({"analysis": "sizes", "outputs": ["sizes.txt"], "parameters": {"inputs": len(args.inputs)},
                  "software": {"name": "sizes", "version": "1.0"}}))
"""


def analyzer_config(
    tmp_path: Path,
    mode: str = "ok",
    walltime: timedelta = timedelta(minutes=5),
    site: ComputeSiteConfig | None = None,
    **delivery: object,
) -> BeamflowConfig:
    script = tmp_path / "sizes.py"
    script.write_text(SIZES)
    base = test_config(tmp_path, **{"max_deliver": 1, "ack_wait": timedelta(seconds=5), **delivery})
    # Outputs stay in scratch a day after `results` holds a verified copy: a hold like any copy's.
    keep = RetentionRule(keep_for=timedelta(days=1), check_endpoint="results")
    extra = {
        "scratch": FilesystemEndpoint(root=tmp_path / "scratch", retention=keep),
        "results": FilesystemEndpoint(root=tmp_path / "results"),
    }
    for endpoint in extra.values():
        endpoint.root.mkdir(parents=True, exist_ok=True)
    policy = AnalysisPolicy(
        name="sizes",
        site="here",
        source="data",
        output_endpoint="results",
        command=["{python}", str(script), "--mode", mode],
        walltime=walltime,
    )
    beamline = base.beamlines["bl832"].model_copy(update={"analysis": policy})
    return base.model_copy(
        update={
            "endpoints": {**base.endpoints, **extra},
            "compute": {"here": site or LocalCompute(scratch="scratch")},
            "beamlines": {"bl832": beamline},
        }
    )


async def test_a_scan_is_analysed_and_its_outputs_brought_back_verified(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = analyzer_config(tmp_path)
    write(tmp_path / "source/P-1/scan_1.h5", os.urandom(12_345))
    services = (build_mover(config), build_ledger(config), build_analyzer(config))
    async with harness(config, nats_server.url, *services) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_1.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 1, timeout=60)
        record = await wait_for_record(
            bus.js, scan.scan_id, lambda r: "job:here" in r.external_ids and "scratch" in r.holds
        )
        entry = await (await JobRegistry.open(bus.js)).get(scan.scan_id, "sizes")
    assert not events.failed, events.failed[0].reason
    [analyzed] = events.of(ScanAnalyzed)
    assert analyzed.exit_status == 0 and analyzed.output_endpoint == "results"
    assert [f.path for f in analyzed.outputs] == ["analysis/sizes/P-1/scan_1/sizes.txt"]
    assert (tmp_path / "results/analysis/sizes/P-1/scan_1/sizes.txt").read_text() == "12345\n"
    assert analyzed.software == {"name": "sizes", "version": "1.0"} and analyzed.parameters == {"inputs": 1}
    assert record.external_ids["job:here"] == analyzed.job_id
    hold = record.holds["scratch"]
    assert hold.check_endpoint == "results", "the outputs in scratch are held until results holds their copy"
    assert (tmp_path / "scratch/analysis/sizes/P-1/scan_1/sizes.txt").exists(), "kept until the hold expires"
    assert entry is not None and (entry.state, entry.end) == ("ended", "completed")
    assert not (tmp_path / "scratch/P-1/scan_1.h5").exists(), "the staged input is removed from scratch"
    assert (tmp_path / "data/P-1/scan_1.h5").exists(), "the verified copy the input came from stays"


async def test_a_job_that_exits_non_zero_is_a_dead_letter_naming_its_log(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = analyzer_config(tmp_path, mode="fail")
    write(tmp_path / "source/P-1/scan_2.h5", os.urandom(100))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_2.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
    [dead] = events.failed
    assert dead.service == "analyzer" and "exit status 3" in dead.reason, dead.reason
    log = Path(dead.reason.split("its log is in ")[1].split()[0]) / "job.out"
    assert "could not read its input" in log.read_text()
    assert not events.of(ScanAnalyzed)
    assert not list((tmp_path / "results").rglob("*.txt"))


async def test_a_job_past_its_walltime_is_stopped_and_fails_the_step(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = analyzer_config(tmp_path, mode="hang", walltime=timedelta(seconds=1))
    write(tmp_path / "source/P-1/scan_3.h5", os.urandom(100))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_3.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
    [dead] = events.failed
    assert "ran past its walltime" in dead.reason, dead.reason
    assert not events.of(ScanAnalyzed)


async def test_an_operator_cancels_a_running_job(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = analyzer_config(tmp_path, mode="hang")
    write(tmp_path / "source/P-1/scan_4.h5", os.urandom(100))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_4.h5"])
        await bus.publish(scan)
        job_id = await running_job(bus.js, scan.scan_id)
        registry = await JobRegistry.open(bus.js)
        marked = await registry.request_cancel(scan.scan_id)
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
    assert [e.job_id for e in marked] == [job_id]
    [dead] = events.failed
    assert "cancelled by an operator" in dead.reason, dead.reason
    with pytest.raises(ProcessLookupError):
        os.kill(int(job_id.removeprefix("local-")), 0)


async def running_job(js: JetStreamContext, scan_id: str) -> str:
    """The id of the scan's analysis job once the site took it (the registry has it from then on)."""
    registry = await JobRegistry.open(js)
    deadline = time.monotonic() + 60
    while True:
        entry = await registry.get(scan_id, "sizes")
        if entry is not None and entry.state == "running" and entry.job_id:
            return entry.job_id
        assert time.monotonic() < deadline, "the job never started"
        await asyncio.sleep(0.05)


async def test_a_stopping_analyzer_stops_its_local_job_and_the_redelivery_runs_it_again(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = analyzer_config(tmp_path, mode="gate", max_deliver=2, drain_timeout=timedelta(seconds=1))
    write(tmp_path / "source/P-1/scan_5.h5", os.urandom(55))
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_5.h5"])
        async with running(build_analyzer(config), config, nats_server.url):
            await bus.publish(scan)
            first = await running_job(bus.js, scan.scan_id)
        # The first analyzer has stopped: its job went with it (nothing outlives it unwatched).
        with pytest.raises(ProcessLookupError):
            os.kill(int(first.removeprefix("local-")), 0)
        (tmp_path / "gate").touch()
        async with running(build_analyzer(config), config, nats_server.url):
            await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 1, timeout=60)
    assert not events.failed, events.failed[0].reason
    [analyzed] = events.of(ScanAnalyzed)
    assert analyzed.job_id != first, "a local job cannot be followed: it ran again"
    assert (tmp_path / "results/analysis/sizes/P-1/scan_5/sizes.txt").read_text() == "55\n"


async def test_a_local_job_that_outlived_its_analyzer_is_stopped_before_it_runs_again(tmp_path: Path) -> None:
    # What an analyzer killed outright (SIGKILL, OOM) leaves: the job's process group, still running in its folder.
    workdir, elsewhere = tmp_path / "job", tmp_path / "other"
    workdir.mkdir()
    elsewhere.mkdir()
    orphan = await asyncio.create_subprocess_exec("sleep", "600", cwd=workdir, start_new_session=True)
    stranger = await asyncio.create_subprocess_exec("sleep", "600", cwd=elsewhere, start_new_session=True)
    spec = JobSpec(name="j", script="", workdir=str(workdir), walltime=timedelta(minutes=1), summary="")
    jobs = LocalJobs(LocalCompute(scratch="scratch"))
    try:
        with pytest.raises(JobLost, match="outlived the analyzer"):
            await jobs.follow(spec, f"local-{orphan.pid}", NeverCancelled())
        assert await asyncio.wait_for(orphan.wait(), timeout=10) == -signal.SIGTERM
        # A pid now used by some other process (not in the job's folder) is never signalled.
        with pytest.raises(JobLost, match="no longer running"):
            await jobs.follow(spec, f"local-{stranger.pid}", NeverCancelled())
        assert stranger.returncode is None
    finally:
        for process in (orphan, stranger):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class NeverCancelled:
    """A job watch for calling a controller directly: nobody asks to cancel, and following never submits."""

    async def submitted(self, job_id: str) -> None:
        raise AssertionError("following a job never submits one")

    async def cancel_requested(self) -> bool:
        return False
