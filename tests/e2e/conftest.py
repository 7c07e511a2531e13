"""A real headless Chromium for the browser tests (Debian's ``chromium`` package).

It is installed with apt-get when missing, which needs root (CI runs as root). Without root or apt the tests FAIL
with the reason -- they are not skipped, so CI cannot pass without having run them. The time apt took is printed
in the terminal summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

CHROMIUM_PACKAGE = "chromium"
TIMINGS: dict[str, float] = {}


class ChromiumUnavailable(RuntimeError):
    """Chromium cannot be installed here; the message says why and what to do."""


def ensure_chromium(timeout: float = 1200.0) -> tuple[str, float]:
    """The ``chromium`` program, installed with apt-get when missing, and the seconds that took (0 if present)."""
    found = shutil.which("chromium")
    if found:
        return found, 0.0
    command = f"apt-get install -y {CHROMIUM_PACKAGE}"
    if os.geteuid() != 0:
        raise ChromiumUnavailable(f"chromium is not installed and only root can install it; run as root: {command}")
    if shutil.which("apt-get") is None:
        raise ChromiumUnavailable(
            f"chromium is not installed and apt-get is missing; install {CHROMIUM_PACKAGE} by hand"
        )
    started = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", CHROMIUM_PACKAGE]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:  # a fresh container has no package lists yet
        update = subprocess.run(
            ["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            tail = "\n".join((update.stderr + result.stdout + result.stderr).splitlines()[-20:])
            raise ChromiumUnavailable(f"'{command}' failed (exit {result.returncode}):\n{tail}")
    found = shutil.which("chromium")
    if not found:
        raise ChromiumUnavailable(f"installed {CHROMIUM_PACKAGE} but there is still no chromium on PATH")
    return found, time.monotonic() - started


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        binary, TIMINGS["apt install chromium"] = ensure_chromium()
    except (ChromiumUnavailable, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"headless Chromium is not available: {exc}", pytrace=False)
    return binary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in TIMINGS.items())
        terminalreporter.write_line(f"browser: {shown}")
