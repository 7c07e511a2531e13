"""The analyzer's Slurm sites on a real Slurm: ``sbatch`` on this host, and NERSC through the unmodified
sfapi-client and the SFAPI stand-in. The same small analysis as the local tests runs as the job.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from beamflow.analyzer.jobs.model import JobLost, JobSpec, SchedulerUnavailable
from beamflow.analyzer.jobs.slurm import SlurmJobs
from beamflow.analyzer.registry import JobRegistry
from beamflow.analyzer.service import build as build_analyzer
from beamflow.common import deadletters
from beamflow.common.compute_config import NerscCompute, SlurmCompute
from beamflow.common.config import BeamflowConfig
from beamflow.common.credentials import check_credentials
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.errors import CredentialsRejected
from beamflow.common.events import ScanAnalyzed, ScanNew
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.testing import harness, running
from beamflow.mover.service import build as build_mover
from beamflow.sfapi_local.auth import make_client_credentials
from beamflow.sfapi_local.testing import LocalNersc
from tests.integration.test_analyzer import NeverCancelled, analyzer_config, running_job
from tests.integration.test_mover import announce, write

pytestmark = pytest.mark.timeout(240)


def host_slurm(tmp_path: Path, nersc: LocalNersc, **kwargs: object) -> BeamflowConfig:
    site = SlurmCompute(scratch="scratch", slurm_conf=str(nersc.slurm.conf_path), poll_interval=timedelta(seconds=0.5))
    return analyzer_config(tmp_path, site=site, **kwargs)  # type: ignore[arg-type]


def at_nersc(tmp_path: Path, nersc: LocalNersc, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> BeamflowConfig:
    monkeypatch.setenv("TEST_SFAPI_CLIENT_ID", nersc.credentials.client_id)
    monkeypatch.setenv("TEST_SFAPI_KEY", nersc.credentials.secret)
    site = NerscCompute(
        scratch="nersc_scratch",
        api_base_url=nersc.api_base_url,
        token_url=nersc.token_url,
        client_id=SecretRef(env="TEST_SFAPI_CLIENT_ID"),
        private_key=SecretRef(env="TEST_SFAPI_KEY"),
        poll_interval=timedelta(seconds=1),
    )
    config = analyzer_config(tmp_path, site=site, **kwargs)  # type: ignore[arg-type]
    # The job sees the scratch folder at the same path (the stand-in's "site" is this machine).
    scratch = FilesystemEndpoint(root=nersc.scratch / tmp_path.name)
    scratch.root.mkdir(parents=True, exist_ok=True)
    return config.model_copy(update={"endpoints": {**config.endpoints, "nersc_scratch": scratch}})


async def test_a_scan_is_analysed_by_a_job_on_the_host_slurm(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    config = host_slurm(tmp_path, nersc)
    write(tmp_path / "source/P-1/scan_s1.h5", os.urandom(4321))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_s1.h5"]))
        await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 1, timeout=60)
    assert not events.failed, events.failed[0].reason
    [analyzed] = events.of(ScanAnalyzed)
    assert analyzed.job_id.isdigit() and nersc.slurm.jobs()[analyzed.job_id].state == "COMPLETED"
    assert (tmp_path / "results/analysis/sizes/P-1/scan_s1/sizes.txt").read_text() == "4321\n"


async def test_a_failing_slurm_job_is_a_dead_letter_with_its_exit_status(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    config = host_slurm(tmp_path, nersc, mode="fail")
    write(tmp_path / "source/P-1/scan_s2.h5", os.urandom(10))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_s2.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
    [dead] = events.failed
    assert "failed with exit status 3" in dead.reason, dead.reason
    assert not events.of(ScanAnalyzed)


async def test_slurm_stops_a_job_past_its_walltime_and_the_step_fails(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    # Slurm's limits are whole minutes and its controller checks them every 30 s: this takes 60-90 s.
    config = host_slurm(tmp_path, nersc, mode="hang", walltime=timedelta(minutes=1))
    write(tmp_path / "source/P-1/scan_s3.h5", os.urandom(10))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_s3.h5"]))
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=180)
    [dead] = events.failed
    assert "ran past its walltime" in dead.reason, dead.reason
    job_id = dead.reason.split("job ")[1].split()[0]
    assert nersc.slurm.jobs()[job_id].state == "TIMEOUT"


async def test_an_operator_cancels_a_job_on_slurm(tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats) -> None:
    config = host_slurm(tmp_path, nersc, mode="hang")
    write(tmp_path / "source/P-1/scan_s4.h5", os.urandom(10))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_s4.h5"])
        await bus.publish(scan)
        job_id = await running_job(bus.js, scan.scan_id)
        await (await JobRegistry.open(bus.js)).request_cancel(scan.scan_id)
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
    [dead] = events.failed
    assert "cancelled by an operator" in dead.reason, dead.reason
    assert nersc.slurm.jobs()[job_id].state.startswith("CANCELLED")


async def test_a_scan_is_analysed_at_nersc_through_the_api(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = at_nersc(tmp_path, nersc, monkeypatch)
    write(tmp_path / "source/P-1/scan_n1.h5", os.urandom(777))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(announce(tmp_path / "source", "bl832", ["P-1/scan_n1.h5"]))
        await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 1, timeout=90)
    assert not events.failed, events.failed[0].reason
    [analyzed] = events.of(ScanAnalyzed)
    submitted = nersc.api.submitted(analyzed.job_id)
    assert submitted is not None and "#SBATCH -t 00:05:00" in submitted.script.read_text()
    assert (tmp_path / "results/analysis/sizes/P-1/scan_n1/sizes.txt").read_text() == "777\n"
    assert not (nersc.scratch / tmp_path.name / "P-1/scan_n1.h5").exists(), "staged input removed"


async def test_a_job_nersc_loses_fails_the_step(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = at_nersc(tmp_path, nersc, monkeypatch, mode="hang")
    write(tmp_path / "source/P-1/scan_n2.h5", os.urandom(10))
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["P-1/scan_n2.h5"])
        await bus.publish(scan)
        job_id = await running_job(bus.js, scan.scan_id)
        nersc.api.lose_job(job_id)
        try:
            await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
        finally:
            nersc.api.find_job(job_id)
            nersc.slurm.run(["scancel", job_id], check=False)
    [dead] = events.failed
    assert "lost" in dead.reason and job_id in dead.reason, dead.reason
    assert not events.of(ScanAnalyzed)


async def test_credentials_of_a_nersc_site_are_checked_and_a_wrong_key_stops_the_analyzer(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = at_nersc(tmp_path, nersc, monkeypatch)
    [report] = await check_credentials(config)
    assert (report.account, report.ok) == ("sfapi:here", True) and "perlmutter is" in report.detail, report
    monkeypatch.setenv("TEST_SFAPI_KEY", make_client_credentials().secret)  # a key NERSC never registered
    [report] = await check_credentials(config)
    assert not report.ok and "invalid_client" in report.detail and "Iris" in report.detail, report
    with pytest.raises(CredentialsRejected, match="analyzer will not start: sfapi:here"):
        async with running(build_analyzer(config), config, nats_server.url):
            pass


async def a_restarted_analyzer_follows_the_job_its_predecessor_submitted(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats, config: BeamflowConfig, name: str
) -> None:
    write(tmp_path / f"source/P-1/{name}.h5", os.urandom(99))
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", [f"P-1/{name}.h5"])
        async with running(build_analyzer(config), config, nats_server.url):
            await bus.publish(scan)
            first = await running_job(bus.js, scan.scan_id)
        # The analyzer stopped mid-job (as in a rolling update); the site keeps running the job.
        job = nersc.slurm.job(first)
        assert job is not None and job.state in ("PENDING", "RUNNING"), job
        async with running(build_analyzer(config), config, nats_server.url):
            (tmp_path / "gate").touch()
            await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 1, timeout=90)
    assert not events.failed, events.failed[0].reason
    [analyzed] = events.of(ScanAnalyzed)
    assert analyzed.job_id == first, "the redelivered message followed the job instead of submitting another"
    assert jobs_of(nersc, scan.scan_id) == [first], "one job for the scan, however often its message was delivered"
    assert (tmp_path / f"results/analysis/sizes/P-1/{name}/sizes.txt").read_text() == "99\n"


async def test_a_restarted_analyzer_follows_its_host_slurm_job(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    config = host_slurm(tmp_path, nersc, mode="gate", max_deliver=2, drain_timeout=timedelta(seconds=1))
    await a_restarted_analyzer_follows_the_job_its_predecessor_submitted(
        tmp_path, nersc, nats_server, config, "scan_r1"
    )


async def test_a_restarted_analyzer_follows_its_nersc_job(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = at_nersc(tmp_path, nersc, monkeypatch, mode="gate", max_deliver=2, drain_timeout=timedelta(seconds=1))
    await a_restarted_analyzer_follows_the_job_its_predecessor_submitted(
        tmp_path, nersc, nats_server, config, "scan_r2"
    )


def jobs_of(nersc: LocalNersc, scan_id: str) -> list[str]:
    """The ids of every Slurm job the analyzer submitted for the scan (its job name holds the scan id)."""
    return sorted(
        (j.job_id for j in nersc.slurm.jobs().values() if j.name == f"beamflow-sizes-{scan_id}"[:64]), key=int
    )


def a_scan_whose_outputs_cannot_be_brought_back(tmp_path: Path, name: str, size: int) -> tuple[ScanNew, Path]:
    """Scan ``P-1/<name>.h5`` of ``size`` random bytes, announced, and a file where the outputs' folder must be
    made on the output endpoint (returned for the test to remove)."""
    write(tmp_path / f"source/P-1/{name}.h5", os.urandom(size))
    blocker = tmp_path / "results/analysis"
    blocker.write_bytes(b"in the way")
    return announce(tmp_path / "source", "bl832", [f"P-1/{name}.h5"]), blocker


async def test_a_replay_after_the_outputs_could_not_be_brought_back_reuses_the_finished_job(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    config = host_slurm(tmp_path, nersc)
    scan, blocker = a_scan_whose_outputs_cannot_be_brought_back(tmp_path, "scan_b", 321)
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
        entry = await (await JobRegistry.open(bus.js)).get(scan.scan_id, "sizes")
        [letter] = await deadletters.read(bus.js)
        blocker.unlink()
        await deadletters.replay(bus.js, letter.seq)
        await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 2, timeout=60)
    [dead] = events.failed
    assert dead.service == "analyzer" and "results/analysis" in dead.reason, dead.reason
    assert entry is not None and (entry.state, entry.end) == ("bringing_back", "completed"), entry
    [analyzed] = events.of(ScanAnalyzed)
    assert analyzed.job_id == entry.job_id, "the replay brought back the finished job's outputs"
    assert jobs_of(nersc, scan.scan_id) == [entry.job_id], "the job was not run a second time"
    assert (tmp_path / "results/analysis/sizes/P-1/scan_b/sizes.txt").read_text() == "321\n"


async def test_following_a_job_slurm_forgot_is_lost_but_a_controller_that_does_not_answer_is_not(
    tmp_path: Path, nersc: LocalNersc
) -> None:
    spec = JobSpec(name="j", script="", workdir=str(tmp_path), walltime=timedelta(minutes=1), summary="")
    answering = SlurmJobs(SlurmCompute(scratch="scratch", slurm_conf=str(nersc.slurm.conf_path)))
    with pytest.raises(JobLost, match="unknown to scontrol and sacct"):
        await answering.follow(spec, "999999", NeverCancelled())
    # The same cluster, its controller unreachable: nothing is known about the job, so it must not count as lost
    # (that would submit it again). scontrol gives up after its own connect retries, about 18 s here.
    unreachable = tmp_path / "slurm.conf"
    unreachable.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", nersc.slurm.conf_path.read_text()))
    silent = SlurmJobs(SlurmCompute(scratch="scratch", slurm_conf=str(unreachable)))
    with pytest.raises(SchedulerUnavailable, match="Unable to contact slurm controller"):
        await silent.follow(spec, "1", NeverCancelled())


async def test_a_replay_after_the_outputs_left_scratch_runs_the_analysis_again(
    tmp_path: Path, nersc: LocalNersc, nats_server: EmbeddedNats
) -> None:
    config = host_slurm(tmp_path, nersc)
    scan, blocker = a_scan_whose_outputs_cannot_be_brought_back(tmp_path, "scan_p", 123)
    async with harness(config, nats_server.url, build_mover(config), build_analyzer(config)) as (bus, events):
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) >= 1, timeout=60)
        [first] = jobs_of(nersc, scan.scan_id)
        blocker.unlink()
        # Scratch is purged before the operator replays: the finished job's outputs are gone.
        outputs = tmp_path / "scratch/analysis/sizes/P-1/scan_p"
        assert (outputs / "sizes.txt").is_file()
        shutil.rmtree(outputs)
        await deadletters.replay(bus.js, (await deadletters.read(bus.js))[0].seq)
        await events.wait_for(lambda c: len(c.failed) >= 2, timeout=60)
        gone = events.failed[1]
        await deadletters.replay(bus.js, (await deadletters.read(bus.js))[-1].seq)
        await events.wait_for(lambda c: len(c.of(ScanAnalyzed)) + len(c.failed) >= 3, timeout=60)
    assert f"outputs of job {first} are not in scratch" in gone.reason, gone.reason
    assert len(events.failed) == 2, "the second replay did not fail again"
    [analyzed] = events.of(ScanAnalyzed)
    [_, second] = jobs_of(nersc, scan.scan_id)
    assert analyzed.job_id == second != first, "the second replay ran a new job instead of following the first"
    assert (tmp_path / "results/analysis/sizes/P-1/scan_p/sizes.txt").read_text() == "123\n"
