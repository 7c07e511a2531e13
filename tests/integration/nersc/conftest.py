"""One local NERSC per test session: a real single-node Slurm, the SFAPI stand-in and a fake HPSS.

Slurm is installed with apt-get when missing, which needs root. Without root (or apt) the tests FAIL with the
reason -- they are not skipped, so CI cannot pass without having run them. The time apt took and the time Slurm
took to start are printed in the terminal summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from beamflow.sfapi_local.slurm import SlurmUnavailable, ensure_slurm_installed
from beamflow.sfapi_local.testing import LocalNersc

TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def nersc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNersc]:
    try:
        TIMINGS["apt install"] = ensure_slurm_installed()
        if os.geteuid() != 0:
            raise SlurmUnavailable("the NERSC stand-in runs slurmd, which must run as root; run these tests as root")
        started = time.monotonic()
        local = LocalNersc(Path(tmp_path_factory.mktemp("nersc")))
        local.start()
        TIMINGS["slurm + sfapi start"] = time.monotonic() - started
    except SlurmUnavailable as exc:
        pytest.fail(f"the local NERSC (a real Slurm) is not available: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def hpss_env(nersc: LocalNersc) -> dict[str, str]:
    """The environment a job has: htar/hsi stand-ins first on PATH, the fake HPSS root and user."""
    return nersc.tool_env


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"local NERSC: {shown}")
