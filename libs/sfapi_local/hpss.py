"""The fake HPSS shared by the ``htar`` and ``hsi`` stand-ins: a local folder that plays the tape archive.

An HPSS path such as ``/home/a/alsdev/als/2024-1.tar`` lives at
``$BEAMFLOW_FAKE_HPSS_ROOT/home/a/alsdev/als/2024-1.tar``.
A relative HPSS path is relative to the HPSS home directory, ``/home/<first letter>/<user>`` as at NERSC (the
user from ``$BEAMFLOW_FAKE_HPSS_USER``, else ``$USER``), or ``$BEAMFLOW_FAKE_HPSS_HOME`` when set. The home
directory is created on first use, as it always exists on the real system.

``write_tool_wrappers`` writes the small ``htar`` and ``hsi`` shell scripts that run the stand-ins with this
Python; the folder holding them goes first on a job's ``PATH`` so a batch script calls them by their real names.
"""

from __future__ import annotations

import getpass
import os
import posixpath
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "BEAMFLOW_FAKE_HPSS_ROOT"
USER_ENV = "BEAMFLOW_FAKE_HPSS_USER"
HOME_ENV = "BEAMFLOW_FAKE_HPSS_HOME"

# sysexits-style codes, which hsi documents as its own ("These agree with standard Unix exit codes").
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSFILE = 72
EX_CANTCREAT = 73
EX_IOERR = 74


class HpssUnavailable(Exception):
    """The fake HPSS is not configured (no ``$BEAMFLOW_FAKE_HPSS_ROOT``) or its root does not exist."""


@dataclass(frozen=True)
class FakeHpss:
    """Maps HPSS paths to local paths under ``root``; ``home`` is the HPSS home directory (an HPSS path)."""

    root: Path
    home: str
    user: str

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> FakeHpss:
        env = os.environ if environ is None else environ
        root = env.get(ROOT_ENV, "")
        if not root:
            raise HpssUnavailable(f"${ROOT_ENV} is not set: the fake HPSS has no root folder")
        root_path = Path(root)
        if not root_path.is_dir():
            raise HpssUnavailable(f"the fake HPSS root {root_path} is not a folder")
        user = env.get(USER_ENV) or env.get("USER") or getpass.getuser()
        home = env.get(HOME_ENV) or default_home(user)
        return cls(root_path, normalize(home, "/"), user)

    def resolve(self, hpss_path: str, cwd: str | None = None) -> str:
        """The absolute, normalized HPSS path for ``hpss_path`` (relative paths start at ``cwd`` or home)."""
        return normalize(hpss_path, cwd or self.home)

    def local(self, hpss_path: str, cwd: str | None = None) -> Path:
        """The local file that holds the HPSS object ``hpss_path``."""
        absolute = self.resolve(hpss_path, cwd)
        return self.root / absolute.lstrip("/") if absolute != "/" else self.root

    def ensure_home(self) -> None:
        self.local(self.home).mkdir(parents=True, exist_ok=True)


def default_home(user: str) -> str:
    """NERSC's HPSS home layout: ``/home/<first letter>/<user>``."""
    return f"/home/{user[:1]}/{user}"


def normalize(path: str, cwd: str) -> str:
    """An absolute HPSS path; ``..`` never climbs above ``/`` (so never out of the fake root)."""
    joined = path if path.startswith("/") else posixpath.join(cwd, path)
    normal = posixpath.normpath("/" + joined.lstrip("/"))
    return "/" if normal in ("/", "//") else normal


def write_tool_wrappers(bin_dir: Path, python: str | None = None) -> Path:
    """Write executable ``htar`` and ``hsi`` scripts into ``bin_dir`` that run the stand-ins; returns bin_dir."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    interpreter = shlex.quote(python or sys.executable)
    for tool in ("htar", "hsi"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec {interpreter} -m beamflow.sfapi_local.{tool} "$@"\n')
        script.chmod(0o755)
    return bin_dir
