"""The unmodified sfapi-client against the local NERSC: real Slurm jobs, the SFAPI's answers, htar and hsi."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from beamflow.sfapi_local.auth import ClientCredentials, make_client_credentials
from beamflow.sfapi_local.htar import NAME_TOO_LONG, SUCCESS_LINE
from beamflow.sfapi_local.slurm import LocalSlurm
from beamflow.sfapi_local.testing import LocalNersc
from sfapi_client import AsyncClient, SfApiError
from sfapi_client.compute import Machine
from sfapi_client.jobs import JobState

pytestmark = pytest.mark.timeout(120)

# What the seed system's HPSS jobs ask for.
XFER = "#SBATCH -q xfer\n#SBATCH -A als\n#SBATCH -C cron\n#SBATCH --licenses=SCRATCH\n#SBATCH -t 12:00:00\n"
LISTING = re.compile(r"^HTAR: ([-dl][-rwxsStT]{9})  (\S+)/(\S+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d)  (.+)$")


def client(nersc: LocalNersc, credentials: ClientCredentials | None = None) -> AsyncClient:
    # wait_interval: sfapi-client polls job state every 10 s by default.
    return AsyncClient(**nersc.client_kwargs(credentials), wait_interval=1)


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def listed_names(stdout: str) -> list[str]:
    names = []
    for line in stdout.splitlines():
        match = LISTING.match(line)
        assert match, f"not an htar listing line: {line!r}"
        names.append(match.group(6))
    return names


# --- sfapi-client and Slurm ------------------------------------------------------------------------------------


async def test_a_submitted_script_runs_under_slurm_and_completes(nersc: LocalNersc, tmp_path: Path) -> None:
    work = nersc.scratch / "completes"
    work.mkdir()
    script = f'#!/bin/bash\n{XFER}#SBATCH -o {work}/job-%j.out\necho "ran $SLURM_JOB_ID" > {work}/result.txt\n'
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        job = await perlmutter.submit_job(script)
        assert job.jobid is not None
        await job.complete(timeout=60)
        assert job.state == JobState.COMPLETED

        accounting = await perlmutter.job(job.jobid)
    assert accounting.state == JobState.COMPLETED
    assert accounting.exitcode == "0:0"
    assert (accounting.qos, accounting.account) == ("xfer", "als")
    assert (work / "result.txt").read_text() == f"ran {job.jobid}\n"
    assert (work / f"job-{job.jobid}.out").exists()
    # The script went into a folder of its own, from which sbatch ran.
    submitted = nersc.api.submitted(job.jobid)
    assert submitted is not None and submitted.script.read_text() == script


async def test_the_site_files_list_and_download_and_a_missing_one_is_an_error(nersc: LocalNersc) -> None:
    work = nersc.scratch / "utilities"
    (work / "sub").mkdir(parents=True)
    (work / "a listing.txt").write_text("HTAR: one\n")
    (work / "blob.bin").write_bytes(bytes(range(256)))
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        entries = await perlmutter.ls(str(work))
        assert sorted(e.name for e in entries) == ["a listing.txt", "blob.bin", "sub"]
        [text_file] = [e for e in entries if e.name == "a listing.txt"]
        assert text_file.size == len("HTAR: one\n") and text_file.perms.startswith("-")
        assert (await text_file.download()).read() == "HTAR: one\n"
        [blob] = await perlmutter.ls(str(work / "blob.bin"))
        assert (await blob.download(binary=True)).read() == bytes(range(256))
        [sub] = [e for e in entries if e.name == "sub"]
        with pytest.raises(IsADirectoryError):
            await sub.download()
        with pytest.raises(SfApiError, match="No such file or directory"):
            await perlmutter.ls(str(work / "absent.txt"))


async def test_a_failing_script_ends_failed_with_its_exit_code(nersc: LocalNersc) -> None:
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        job = await perlmutter.submit_job("#!/bin/bash\necho about to fail\nexit 3\n")
        await job.complete(timeout=60)
        assert job.state == JobState.FAILED
        accounting = await perlmutter.job(job.jobid)
    assert accounting.exitcode == "3:0"
    assert accounting.qos == "regular"  # no -q: the site's default QOS


async def test_a_qos_the_site_does_not_offer_is_refused_as_slurm_would(nersc: LocalNersc) -> None:
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        with pytest.raises(SfApiError) as refused:
            await perlmutter.submit_job("#!/bin/bash\n#SBATCH --qos=hpss_please\necho never\n")
    assert "Invalid qos specification" in refused.value.message


async def test_a_job_the_api_loses_is_not_found_until_it_is_found_and_cancelled(nersc: LocalNersc) -> None:
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        job = await perlmutter.submit_job("#!/bin/bash\nsleep 60\n")
        assert await job.running(timeout=30) == JobState.RUNNING
        nersc.api.lose_job(job.jobid)
        with pytest.raises(SfApiError) as lost:
            await job.update()
        assert lost.value.message == f"Job not found: {job.jobid}"
        with pytest.raises(SfApiError, match="Job not found"):
            await perlmutter.job(job.jobid)

        nersc.api.find_job(job.jobid)
        await job.cancel(wait=True)
        assert job.state == JobState.CANCELLED
        assert (await perlmutter.job(job.jobid)).state == JobState.CANCELLED  # sacct says "CANCELLED by 0"


async def test_a_wrong_client_key_gets_no_token(nersc: LocalNersc) -> None:
    other = make_client_credentials()
    impostor = ClientCredentials(nersc.credentials.client_id, other.private_key_pem, other.public_key_pem)
    for credentials in (impostor, other):  # the right id with another key, and a client nobody registered
        async with client(nersc, credentials) as sfapi:
            with pytest.raises(OAuthError) as refused:
                await sfapi.compute(Machine.perlmutter)
        assert refused.value.error == "invalid_client"
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{nersc.api_base_url}/status/perlmutter")).status_code == 200  # public
        assert (await http.get(f"{nersc.api_base_url}/compute/jobs/perlmutter")).status_code == 401


async def test_a_job_archives_with_the_htar_and_hsi_on_its_path(nersc: LocalNersc) -> None:
    work = nersc.scratch / "archive-job"
    (work / "scan1").mkdir(parents=True)
    (work / "scan1" / "frame_0001.h5").write_bytes(b"\x89HDF" * 1000)
    (work / "notes.txt").write_text("beamline 7.3.3\n")
    (work / "big.dat").write_bytes(b"B" * 100_000)
    script = (
        f"#!/bin/bash\n{XFER}#SBATCH -o {work}/archive-%j.out\nset -euo pipefail\ncd {work}\n"
        "htar -cvPf als/2024-1.tar -Hcrc scan1 notes.txt\n"
        "htar -tf als/2024-1.tar > listing.txt\n"
        'hsi "mkdir -p als/big; cput big.dat : als/big/big.dat"\n'
    )
    async with client(nersc) as sfapi:
        perlmutter = await sfapi.compute(Machine.perlmutter)
        job = await perlmutter.submit_job(script)
        await job.complete(timeout=60)
    log = (work / f"archive-{job.jobid}.out").read_text()
    assert job.state == JobState.COMPLETED, log
    home = nersc.hpss_root / "home/a/alsdev"
    with tarfile.open(home / "als/2024-1.tar") as archive:
        names = archive.getnames()
    assert names[:3] == ["scan1", "scan1/frame_0001.h5", "notes.txt"]
    assert Path(names[3]).name.startswith("HTAR_CF_CHK_")  # htar's consistency file comes last
    assert (home / "als/2024-1.tar.idx").exists()
    assert "scan1/frame_0001.h5" in (work / "listing.txt").read_text()
    assert (home / "als/big/big.dat").read_bytes() == (work / "big.dat").read_bytes()
    assert SUCCESS_LINE in log


# --- htar ------------------------------------------------------------------------------------------------------


def make_project(root: Path) -> None:
    (root / "data/scan1").mkdir(parents=True)
    (root / "data/scan1/a.h5").write_bytes(b"a" * 5000)
    (root / "data/scan1/b.h5").write_bytes(b"b" * 700)
    (root / "notes.txt").write_text("notes\n")


def test_htar_creates_an_archive_and_index_lists_and_extracts(
    nersc: LocalNersc, hpss_env: dict[str, str], tmp_path: Path
) -> None:
    make_project(tmp_path)
    created = run(["htar", "-cvf", "proj/p1.tar", "-P", "-Hcrc", "data", "notes.txt"], hpss_env, tmp_path)
    assert created.returncode == 0, created.stderr
    assert "HTAR: a   data/scan1/a.h5" in created.stdout.splitlines()
    assert created.stderr.splitlines()[-1] == SUCCESS_LINE
    archive = nersc.hpss_root / "home/a/alsdev/proj/p1.tar"
    index = json.loads(archive.with_name("p1.tar.idx").read_text())
    crcs = {member["name"]: member["crc32"] for member in index["members"]}
    assert crcs["data/scan1/a.h5"] is not None

    listed = run(["htar", "-tf", "proj/p1.tar"], hpss_env, tmp_path)
    assert listed.returncode == 0 and listed.stderr.strip() == SUCCESS_LINE
    names = listed_names(listed.stdout)
    assert names[:5] == ["data/", "data/scan1/", "data/scan1/a.h5", "data/scan1/b.h5", "notes.txt"]
    assert Path(names[5]).name.startswith("HTAR_CF_CHK_")
    with tarfile.open(archive) as tar:  # a plain tar any tar reads
        assert tar.getmember("data/scan1/a.h5").size == 5000

    out = tmp_path / "restore"
    out.mkdir()
    extracted = run(["htar", "-xvf", "proj/p1.tar", "-Hcrc"], hpss_env, out)
    assert extracted.returncode == 0, extracted.stderr
    assert (out / "data/scan1/a.h5").read_bytes() == (tmp_path / "data/scan1/a.h5").read_bytes()
    assert (out / "notes.txt").read_text() == "notes\n"
    assert not list(out.glob("**/HTAR_CF_CHK_*"))

    one = tmp_path / "one"
    one.mkdir()
    assert run(["htar", "-xf", "proj/p1.tar", "data/scan1/b.h5"], hpss_env, one).returncode == 0
    assert [p.relative_to(one).as_posix() for p in one.rglob("*") if p.is_file()] == ["data/scan1/b.h5"]

    # -c overwrites an existing archive without asking, as the real htar does.
    assert run(["htar", "-cf", "proj/p1.tar", "notes.txt"], hpss_env, tmp_path).returncode == 0
    assert listed_names(run(["htar", "-tf", "proj/p1.tar"], hpss_env, tmp_path).stdout)[0] == "notes.txt"


def test_htar_skips_names_too_long_for_ustar_says_successful_and_exits_70(
    nersc: LocalNersc, hpss_env: dict[str, str], tmp_path: Path
) -> None:
    fits = "d" * 60 + "/" + "f" * 99  # 99 bytes after the slash: fits
    too_long_name = "d" * 60 + "/" + "g" * 100  # 100 bytes after the last slash
    too_long_prefix = "p" * 155 + "/h"  # the prefix would need 155 bytes
    for name in (fits, too_long_name, too_long_prefix):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    (tmp_path / "ok.txt").write_text("ok")
    created = run(["htar", "-cf", "long.tar", "ok.txt", fits, too_long_name, too_long_prefix], hpss_env, tmp_path)
    assert created.returncode == 70
    assert SUCCESS_LINE in created.stderr.splitlines()
    assert NAME_TOO_LONG in created.stderr
    assert f"[{too_long_name}]" in created.stderr and f"[{too_long_prefix}]" in created.stderr
    names = listed_names(run(["htar", "-tf", "long.tar"], hpss_env, tmp_path).stdout)
    assert names[:2] == ["ok.txt", fits]
    assert too_long_name not in names and too_long_prefix not in names


def test_htar_refuses_too_many_members_and_lists_nothing_without_an_index(
    nersc: LocalNersc, hpss_env: dict[str, str], tmp_path: Path
) -> None:
    make_project(tmp_path)  # data/, data/scan1/, two files, notes.txt: five members
    limited = dict(hpss_env, BEAMFLOW_FAKE_HTAR_MAX_MEMBERS="4")
    refused = run(["htar", "-cf", "many.tar", "data", "notes.txt"], limited, tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == "HTAR: HTAR FAILED"
    assert not (nersc.hpss_root / "home/a/alsdev/many.tar").exists()
    assert run(["htar", "-M", "5", "-cf", "many.tar", "data", "notes.txt"], limited, tmp_path).returncode == 0

    (nersc.hpss_root / "home/a/alsdev/many.tar.idx").unlink()
    listed = run(["htar", "-tf", "many.tar"], hpss_env, tmp_path)
    assert listed.returncode == 1 and "No such file: many.tar.idx" in listed.stderr


# --- hsi -------------------------------------------------------------------------------------------------------


def test_hsi_makes_folders_stores_lists_fetches_and_removes(
    nersc: LocalNersc, hpss_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "big.h5").write_bytes(b"\0" * 4096)
    home = nersc.hpss_root / "home/a/alsdev"

    made = run(["hsi", "mkdir -p als/2024/big; cput big.h5 : als/2024/big/big.h5"], hpss_env, tmp_path)
    assert made.returncode == 0, made.stderr
    assert (home / "als/2024/big/big.h5").read_bytes() == (tmp_path / "big.h5").read_bytes()
    again = run(["hsi", "cput", "big.h5", ":", "als/2024/big/big.h5"], hpss_env, tmp_path)
    assert again.returncode == 0 and "not stored" in again.stderr  # the HPSS copy is not older

    listed = run(["hsi", "ls", "-l", "/home/a/alsdev/als/2024/big"], hpss_env, tmp_path)
    assert listed.returncode == 0
    assert listed.stderr.splitlines()[0] == "/home/a/alsdev/als/2024/big:"  # hsi writes to stderr
    assert re.search(r"^-rw\S* +\d+ +\S+ +\S+ +4096 .* big\.h5$", listed.stderr, re.MULTILINE)

    fetched = run(["hsi", "cget", "copy.h5", ":", "als/2024/big/big.h5"], hpss_env, tmp_path)
    assert fetched.returncode == 0 and (tmp_path / "copy.h5").read_bytes() == b"\0" * 4096

    assert run(["hsi", "rm", "als/2024/big/big.h5"], hpss_env, tmp_path).returncode == 0
    assert not (home / "als/2024/big/big.h5").exists()
    missing = run(["hsi", "ls", "als/2024/big/big.h5"], hpss_env, tmp_path)
    assert missing.returncode == 72 and "HPSS_ENOENT" in missing.stderr
    assert run(["hsi", "cget", "x.h5", ":", "als/nothing.h5"], hpss_env, tmp_path).returncode == 72
    assert run(["hsi", "mkdir", "no/such/parent"], hpss_env, tmp_path).returncode == 72


# --- isolation -------------------------------------------------------------------------------------------------


def test_a_second_local_slurm_on_the_machine_does_not_meet_the_first(nersc: LocalNersc, tmp_path: Path) -> None:
    with LocalSlurm(tmp_path / "second", install=False) as second:
        assert {second.ctld_port, second.slurmd_port}.isdisjoint({nersc.slurm.ctld_port, nersc.slurm.slurmd_port})
        assert second.cluster_name != nersc.slurm.cluster_name
        (tmp_path / "job.sh").write_text("#!/bin/bash\n#SBATCH --job-name=only-on-second\ntrue\n")
        job_id = second.sbatch(tmp_path / "job.sh", cwd=tmp_path)
        assert second.wait_for_job(job_id, timeout=30).state == "COMPLETED"
        assert "only-on-second" not in {record.name for record in nersc.slurm.jobs().values()}
    assert nersc.slurm.run(["sinfo", "-h", "-o", "%T"]).stdout.strip() in ("idle", "mixed", "allocated")
