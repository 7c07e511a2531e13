"""Debian packages a test setup needs (Slurm, Chromium, kubectl), installed with apt-get when missing.

The project's tests must install what they need on a clean machine that has only Python and the package
registries; CI runs them as root on Debian. Without root or apt-get the caller is told exactly what to run,
so a test fails with the reason instead of being skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence


class PackageUnavailable(RuntimeError):
    """The programs are missing and their packages cannot be installed here; the message says what to do."""


def ensure_programs(
    programs: Sequence[str],
    packages: Sequence[str],
    *,
    find: Callable[[str], str | None] = shutil.which,
    timeout: float = 1200.0,
) -> float:
    """Install ``packages`` with apt-get when any of ``programs`` is missing; the seconds it took (0 if none).

    A fresh container has no package lists yet, so an install that fails is tried once more after
    ``apt-get update``.
    """
    if all(find(name) for name in programs):
        return 0.0
    command = "apt-get install -y " + " ".join(packages)
    if os.geteuid() != 0:
        raise PackageUnavailable(f"{', '.join(programs)} missing and only root can install them; run: {command}")
    if shutil.which("apt-get") is None:
        raise PackageUnavailable(f"{', '.join(programs)} missing and apt-get is not here; install {packages} by hand")
    started = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *packages]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        update = subprocess.run(
            ["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            tail = "\n".join((update.stderr + result.stdout + result.stderr).splitlines()[-20:])
            raise PackageUnavailable(f"'{command}' failed (exit {result.returncode}):\n{tail}")
    missing = [name for name in programs if not find(name)]
    if missing:
        raise PackageUnavailable(f"installed {list(packages)} but {missing} are still missing")
    return time.monotonic() - started
