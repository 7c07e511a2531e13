"""A real headless Chromium for the browser tests (Debian's ``chromium`` package).

It is installed with apt-get when missing, which needs root (CI runs as root). Without root or apt the tests FAIL
with the reason -- they are not skipped, so CI cannot pass without having run them. The time apt took is printed
in the terminal summary.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from beamflow.common.system_packages import PackageUnavailable, ensure_programs

CHROMIUM_PACKAGE = "chromium"
TIMINGS: dict[str, float] = {}


def ensure_chromium() -> tuple[str, float]:
    """The ``chromium`` program, installed with apt-get when missing, and the seconds that took (0 if present)."""
    seconds = ensure_programs(["chromium"], [CHROMIUM_PACKAGE])
    found = shutil.which("chromium")
    assert found is not None  # ensure_programs raised otherwise
    return found, seconds


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        binary, TIMINGS["apt install chromium"] = ensure_chromium()
    except (PackageUnavailable, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"headless Chromium is not available: {exc}", pytrace=False)
    return binary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"browser: {shown}")
