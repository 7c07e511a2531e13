"""``beamflow check --credentials`` as an operator runs it: one line per account, what failed and what to do,
never a secret. Globus and SciCat are the local stand-ins; the NERSC account is checked in the nersc tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import yaml
from beamflow.globus_local.testing import LocalGlobus
from beamflow.scicat_local.testing import LocalSciCat

BEAMFLOW = [sys.executable, "-m", "beamflow.common.cli"]


def config_file(tmp_path: Path, globus: LocalGlobus, scicat: LocalSciCat) -> Path:
    nersc = str(uuid.uuid4())
    globus.add_collection(nersc, tmp_path / "nersc-site")
    (tmp_path / "nersc-site/cfs").mkdir(parents=True)
    raw = {
        "state_dir": str(tmp_path / "state"),
        "catalog": {"url": scicat.url, "username": scicat.username, "password": {"env": "TEST_SCICAT_PASSWORD"}},
        "endpoints": {
            "data": {"kind": "filesystem", "root": str(tmp_path / "data")},
            "nersc": {
                "kind": "globus",
                "collection_id": nersc,
                "root": "/cfs",
                "client_id": {"env": "TEST_GLOBUS_ID"},
                "client_secret": {"env": "TEST_GLOBUS_SECRET"},
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BEAMFLOW, "check", "--credentials", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_check_credentials_logs_in_to_each_account_and_says_what_failed(tmp_path: Path) -> None:
    with LocalGlobus(tmp_path / "globus") as globus, LocalSciCat(tmp_path / "scicat.sqlite") as scicat:
        path = config_file(tmp_path, globus, scicat)
        good = {
            **globus.env,
            "TEST_GLOBUS_ID": globus.client_credentials.client_id,
            "TEST_GLOBUS_SECRET": globus.client_credentials.client_secret,
            "TEST_SCICAT_PASSWORD": scicat.password,
        }
        fine = check(path, good)
        wrong = check(path, {**good, "TEST_GLOBUS_SECRET": "wrong-globus-secret", "TEST_SCICAT_PASSWORD": "nope"})
        unset = check(path, {k: v for k, v in good.items() if k != "TEST_GLOBUS_SECRET"})
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "globus:nersc: ok: token valid for" in fine.stdout and "lists /cfs" in fine.stdout, fine.stdout
    assert f"scicat: ok: logged in to {scicat.url} as {scicat.username}" in fine.stdout, fine.stdout
    assert wrong.returncode == 1
    assert "globus:nersc: FAILED" in wrong.stdout and "invalid_client" in wrong.stdout, wrong.stdout
    assert "scicat: FAILED" in wrong.stdout, wrong.stdout
    assert "2 problem(s) found" in wrong.stdout
    assert "wrong-globus-secret" not in wrong.stdout + wrong.stderr and "nope" not in wrong.stdout + wrong.stderr
    assert unset.returncode == 1 and "set the environment variable TEST_GLOBUS_SECRET" in unset.stdout, unset.stdout
