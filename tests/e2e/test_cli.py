"""The ``beamflow`` command as a user runs it: separate processes, real files, real NATS."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import psutil
from beamflow.common.checksums import file_checksum
from beamflow.common.natsserver import free_port
from beamflow.scicat_local import LocalSciCat
from pyscicat.client import ScicatClient

REPO = Path(__file__).resolve().parents[2]
BEAMFLOW = [sys.executable, "-m", "beamflow.common.cli"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BEAMFLOW, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}
    )


def test_help_lists_the_commands() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in ("up", "run", "demo", "check"):
        assert re.search(rf"\b{command}\b", done.stdout)


def test_check_accepts_the_shipped_configs() -> None:
    for name in ("demo", "bl733", "bl832"):
        done = run("check", f"config/{name}.yaml")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ok" in done.stdout


def test_check_lists_every_problem_with_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "endpoints:\n"
        "  src: {kind: filesystem, root: /x}\n"
        "  far: {kind: tape}\n"
        "beamlines:\n"
        "  bl1:\n"
        "    watch: {endpoint: nowhere}\n"
        "    scan: {suffixes: [h5]}\n"
    )
    done = run("check", str(bad))
    assert done.returncode == 1
    assert "endpoints.far" in done.stdout
    assert "beamlines.bl1.scan.suffixes" in done.stdout


def test_check_environment_reports_missing_roots_and_secrets() -> None:
    done = run("check", "config/bl733.yaml", "--environment", env={"BEAMFLOW_GLOBUS_CLIENT_ID": ""})
    assert done.returncode == 1
    assert "endpoints.data733.root" in done.stdout
    assert "client_secret" in done.stdout


def test_run_refuses_an_unknown_service_and_a_missing_server() -> None:
    unknown = run("run", "teleporter")
    assert unknown.returncode == 2 and "mover" in unknown.stderr and "watcher" in unknown.stderr
    no_server = run("run", "mover", env={"BEAMFLOW_NATS_URL": ""})
    assert no_server.returncode == 2 and "--nats" in no_server.stderr


def test_run_stops_on_sigterm_while_still_waiting_for_a_server() -> None:
    # Nothing listens on that port: the service keeps trying to connect, and SIGTERM must still end it.
    dead = f"nats://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([*BEAMFLOW, "run", "mover", "--nats", dead], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first failed attempt is logged: the process is inside its start
            if "nats error" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        rest = proc.stderr.read()
        assert "stop requested while starting" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_runs_end_to_end_and_reports_every_scan(tmp_path: Path) -> None:
    done = run("demo", "--scans", "3", "--workdir", str(tmp_path), timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "copies verified 11 of 11 expected" in done.stderr  # 3 x 2 (7.3.3) + 2 x 2 + 1 restricted (8.3.2)
    assert "every scan arrived" in done.stderr
    restricted = list((tmp_path / "demo/nersc832").rglob("*.h5"))
    assert restricted and not any("restricted" in str(p) for p in restricted)
    assert list((tmp_path / "demo/data832/restricted").rglob("*.h5"))
    assert "datasets        5 of 5 expected in the catalog" in done.stderr  # the restricted scan is not listed
    catalog_matches_the_files(tmp_path / "state/scicat/catalog.sqlite")


def catalog_matches_the_files(database: Path) -> None:
    """What the demo's local SciCat holds, read with pyscicat, against the files on disk."""
    with LocalSciCat(database) as scicat:
        client = ScicatClient(scicat.url, username=scicat.username, password=scicat.password)
        found = client.datasets_get_many({}) or []
        raw = [d for d in found if d["type"] == "raw"]
        derived = [d for d in found if d["type"] == "derived"]
        assert len(raw) == 5
        assert len({k for d in raw for k in d["keywords"] if k.startswith("beamflow-scan:")}) == 5
        # Every catalogued scan was analysed too: a derived dataset naming its raw one and the analysis.
        assert sorted(d["inputDatasets"][0] for d in derived) == sorted(d["pid"] for d in raw)
        assert all(d["jobParameters"]["analysis"] in ("saxs_iq", "tomo_preview") for d in derived)
        for dataset in found:
            [block] = client.datasets_origdatablocks_get_one(dataset["pid"])
            files = [Path(dataset["sourceFolder"]) / f["path"] for f in block["dataFileList"]]
            assert [f["chk"] for f in block["dataFileList"]] == [file_checksum(p)[0] for p in files]
            if dataset["type"] == "derived":
                assert files and all(".beamflow" not in str(p) for p in files)  # outputs, not the job's files
                continue
            if dataset["creationLocation"].endswith("7.3.3"):
                assert sorted(p.suffix for p in files) == [".edf", ".txt"]
                header = next(p for p in files if p.suffix == ".txt").read_text()
                assert f"PI: {dataset['principalInvestigator']}" in header
                assert f"Proposal = {dataset['proposalId']}" in header
            else:
                with h5py.File(files[0]) as h5:
                    pi = h5["/measurement/sample/experiment/pi"][()]
                pi = (pi.reshape(-1)[0] if hasattr(pi, "reshape") else pi).decode()
                assert dataset["principalInvestigator"] == pi.strip(" '\",")
            attachments = client._call_endpoint(
                cmd="get", endpoint=f"Datasets/{dataset['pid'].replace('/', '%2F')}/attachments"
            )
            assert len(attachments) == 1 and attachments[0]["thumbnail"].startswith("data:image/png;base64,")


def test_up_runs_until_interrupted_and_moves_a_scan(tmp_path: Path) -> None:
    env = {**os.environ, "BEAMFLOW_HOME": str(tmp_path)}
    proc = subprocess.Popen([*BEAMFLOW, "up"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        assert any("beamflow is up" in line for line in lines), "".join(lines)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # nats-server, watcher, mover
        scan = tmp_path / "demo/spot832/2026/tomo_0001.h5"
        scan.parent.mkdir(parents=True, exist_ok=True)
        scan.write_bytes(os.urandom(100_000))
        final = tmp_path / "demo/nersc832/2026/tomo_0001.h5"
        deadline = time.monotonic() + 30
        while not final.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting on another process's outcome on disk
        assert final.read_bytes() == scan.read_bytes()
        # An operator command on this machine finds the embedded server and logs in as its operator user.
        status = subprocess.run(
            [*BEAMFLOW, "status"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert status.returncode == 0 and "tomo_0001" in status.stdout, status.stdout + status.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
