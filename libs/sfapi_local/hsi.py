"""A stand-in for NERSC's ``hsi`` working on the fake HPSS folder (see ``hpss``).

Run as ``python -m beamflow.sfapi_local.hsi [options] command [args] [; command ...]`` (or as ``hsi`` through the
wrapper on a job's ``PATH``). As with the real one, the words after the options form HSI command lines, separated
by ``;`` (``hsi "mkdir -p a/b; cput x : a/b/x"`` and ``hsi cput x : a/b/x`` both work). Commands:

* ``ls [-l] [-a] [-d] [-1] [path...]`` -- a folder lists as ``<path>:`` then its entries; a file as its path.
* ``mkdir [-p] path...``, ``rmdir path...``, ``rm [-R] path...``, ``cd path``, ``pwd``, ``lcd path``, ``lpwd``.
* ``put``/``cput [-P] [-p] src...`` and ``get``/``cget [-p] src...``. Each ``src`` is either ``local : hpss``
  (spaces around the colon, as HSI requires) or a single path, which HSI takes as the HPSS path and pairs with
  its last component as the local name. So ``cput local remote`` is *two* transfers, of ``local`` and of
  ``remote``, exactly as with the real hsi -- use the colon to rename. ``cput`` stores only when the HPSS file
  is missing or older than the local file (as documented for HSI); ``cget`` fetches only when the local file does
  not exist. ``-P`` creates missing HPSS folders; ``-p`` keeps the file's modification time (without it the HPSS
  copy gets the transfer time, as on the real system).

Relative HPSS paths start at the HPSS home (``/home/<x>/<user>``). Output goes to stderr -- the real hsi writes its
listings and transfer reports there too, which is why scripts run ``hsi ... 2>&1``. The first failing command
stops the run. Exit codes follow HSI's sysexits table: 64 usage, 66 a local input file is missing, 72 an HPSS
path is missing or of the wrong kind, 73 a local file cannot be created, 0 otherwise. Wildcards are not expanded.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import shutil
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from beamflow.sfapi_local.hpss import (
    EX_CANTCREAT,
    EX_NOINPUT,
    EX_OSFILE,
    EX_UNAVAILABLE,
    EX_USAGE,
    FakeHpss,
    HpssUnavailable,
)
from beamflow.sfapi_local.owners import group_name, user_name

_OPTIONS_WITH_VALUE = {"-a", "-A", "-c", "-d", "-l", "-o", "-O", "-p", "-s", "-k", "-h"}
_OPTIONS = {"-q", "-P", "-e", "-v"}


class HsiError(Exception):
    """A command failed; ``code`` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def split_commands(words: Sequence[str]) -> list[list[str]]:
    """The HSI command lines in ``words`` (the arguments after the options), split at ``;``."""
    lexer = shlex.shlex(" ".join(words), posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if set(token) == {";"}:
            commands.append([])
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def transfer_pairs(args: Sequence[str]) -> list[tuple[str, str]]:
    """``(local, hpss)`` pairs from put/get arguments: ``local : hpss``, or one path (HPSS) paired with its last
    component (local)."""
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(args):
        if index + 2 < len(args) and args[index + 1] == ":":
            pairs.append((args[index], args[index + 2]))
            index += 3
        elif args[index] == ":":
            raise HsiError(EX_USAGE, "a ':' needs a local name before it and an HPSS name after it")
        else:
            pairs.append((posixpath.basename(args[index].rstrip("/")), args[index]))
            index += 1
    return pairs


@dataclass
class Session:
    """The state of one hsi run: the HPSS and local working directories."""

    hpss: FakeHpss
    cwd: str
    local_cwd: Path
    quiet: bool = False

    def local_path(self, name: str) -> Path:
        return Path(name) if name.startswith("/") else self.local_cwd / name

    def remote(self, name: str) -> tuple[str, Path]:
        absolute = self.hpss.resolve(name, self.cwd)
        return absolute, self.hpss.local(absolute)

    def run(self, command: list[str]) -> None:
        verb, args = command[0], command[1:]
        method = getattr(self, f"cmd_{verb.lower()}", None)
        if method is None:
            raise HsiError(EX_USAGE, f"unknown command {verb!r}")
        method(args)

    # -- listing and folders --

    def cmd_ls(self, args: list[str]) -> None:
        flags, paths = _flags(args, "la1dRF")
        for name in paths or [self.cwd]:
            absolute, local = self.remote(name)
            if not os.path.lexists(local):
                raise HsiError(
                    EX_OSFILE, f"*** hpss_Lstat: No such file or directory [-2: HPSS_ENOENT]\n    {absolute}"
                )
            if local.is_dir() and "d" not in flags:
                _say(f"{absolute}:")
                entries = sorted(entry.name for entry in local.iterdir())
                if "a" not in flags:
                    entries = [entry for entry in entries if not entry.startswith(".")]
                for entry in entries:
                    _say(_ls_line(local / entry, entry) if "l" in flags else entry)
            else:
                _say(_ls_line(local, absolute) if "l" in flags else absolute)

    def cmd_mkdir(self, args: list[str]) -> None:
        flags, paths = _flags(args, "pm")
        if not paths:
            raise HsiError(EX_USAGE, "mkdir needs a path")
        for name in paths:
            absolute, local = self.remote(name)
            if "p" in flags:
                if local.exists() and not local.is_dir():
                    raise HsiError(EX_OSFILE, f"*** mkdir: {absolute}: exists and is not a directory")
                local.mkdir(parents=True, exist_ok=True)
                continue
            if os.path.lexists(local):
                raise HsiError(EX_OSFILE, f"*** mkdir: {absolute}: File exists")
            if not local.parent.is_dir():
                raise HsiError(EX_OSFILE, f"*** mkdir: {absolute}: No such file or directory [-2: HPSS_ENOENT]")
            local.mkdir()
            if not self.quiet:
                _say(f"mkdir: {absolute}")

    def cmd_rmdir(self, args: list[str]) -> None:
        for name in args:
            absolute, local = self.remote(name)
            if not local.is_dir():
                raise HsiError(EX_OSFILE, f"*** rmdir: {absolute}: No such directory [-2: HPSS_ENOENT]")
            if any(local.iterdir()):
                raise HsiError(EX_OSFILE, f"*** rmdir: {absolute}: Directory not empty [-39: HPSS_ENOTEMPTY]")
            local.rmdir()
            if not self.quiet:
                _say(f"rmdir: {absolute}")

    def cmd_rm(self, args: list[str]) -> None:
        flags, paths = _flags(args, "Rrf")
        if not paths:
            raise HsiError(EX_USAGE, "rm needs a path")
        for name in paths:
            absolute, local = self.remote(name)
            if not os.path.lexists(local):
                raise HsiError(
                    EX_OSFILE, f"*** hpss_Unlink: No such file or directory [-2: HPSS_ENOENT]\n    {absolute}"
                )
            if local.is_dir() and not local.is_symlink():
                if not flags & {"R", "r"}:
                    raise HsiError(EX_OSFILE, f"*** rm: {absolute}: Is a directory [-21: HPSS_EISDIR]")
                shutil.rmtree(local)
            else:
                local.unlink()
            if not self.quiet:
                _say(f"rm: {absolute}")

    def cmd_cd(self, args: list[str]) -> None:
        absolute, local = self.remote(args[0] if args else self.hpss.home)
        if not local.is_dir():
            raise HsiError(EX_OSFILE, f"*** cd: {absolute}: No such directory [-2: HPSS_ENOENT]")
        self.cwd = absolute

    def cmd_pwd(self, args: list[str]) -> None:
        _say(f"pwd0: {self.cwd}")

    def cmd_lcd(self, args: list[str]) -> None:
        target = self.local_path(args[0]) if args else Path.home()
        if not target.is_dir():
            raise HsiError(EX_NOINPUT, f"*** lcd: {target}: No such directory")
        self.local_cwd = target

    def cmd_lpwd(self, args: list[str]) -> None:
        _say(f"local directory: {self.local_cwd}")

    def cmd_quit(self, args: list[str]) -> None:
        raise _Quit

    cmd_exit = cmd_bye = cmd_end = cmd_quit

    # -- transfers --

    def cmd_put(self, args: list[str], *, conditional: bool = False) -> None:
        flags, rest = _flags(args, "PpdhRr")
        if not rest:
            raise HsiError(EX_USAGE, "put needs a file")
        for local_name, remote_name in transfer_pairs(rest):
            source = self.local_path(local_name)
            absolute, target = self.remote(remote_name)
            if not source.is_file():
                raise HsiError(EX_NOINPUT, f"*** put: {local_name}: No such file or not a regular file")
            if target.is_dir():
                raise HsiError(EX_OSFILE, f"*** put: {absolute}: Is a directory [-21: HPSS_EISDIR]")
            if conditional and target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
                if not self.quiet:
                    _say(f"cput: '{absolute}' is as new as '{local_name}'; not stored")
                continue
            if not target.parent.is_dir():
                if "P" not in flags:
                    raise HsiError(EX_OSFILE, f"*** put: {absolute}: No such file or directory [-2: HPSS_ENOENT]")
                target.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            size = _copy(source, target, keep_mtime="p" in flags)
            if "d" in flags:
                source.unlink()
            if not self.quiet:
                rate = size / max(time.monotonic() - started, 1e-6) / 1e6
                verb = "cput" if conditional else "put"
                _say(f"{verb}  '{local_name}' : '{absolute}' ( {size} bytes, {rate:.1f} MBS (cos=1))")

    def cmd_cput(self, args: list[str]) -> None:
        self.cmd_put(args, conditional=True)

    def cmd_get(self, args: list[str], *, conditional: bool = False) -> None:
        flags, rest = _flags(args, "pRrh")
        if not rest:
            raise HsiError(EX_USAGE, "get needs a file")
        for local_name, remote_name in transfer_pairs(rest):
            absolute, source = self.remote(remote_name)
            target = self.local_path(local_name)
            if not source.is_file():
                raise HsiError(EX_OSFILE, f"*** get: {absolute}: No such file or directory [-2: HPSS_ENOENT]")
            if conditional and os.path.lexists(target):
                if not self.quiet:
                    _say(f"cget: '{local_name}' exists; '{absolute}' not fetched")
                continue
            if not target.parent.is_dir():
                raise HsiError(EX_CANTCREAT, f"*** get: {local_name}: No such local directory")
            started = time.monotonic()
            size = _copy(source, target, keep_mtime="p" in flags)
            if not self.quiet:
                rate = size / max(time.monotonic() - started, 1e-6) / 1e6
                stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(source.stat().st_mtime))
                verb = "cget" if conditional else "get"
                _say(f"{verb}  '{local_name}' : '{absolute}' ({stamp} {size} bytes, {rate:.1f} MBS )")

    def cmd_cget(self, args: list[str]) -> None:
        self.cmd_get(args, conditional=True)


class _Quit(Exception):
    pass


def _flags(args: Sequence[str], allowed: str) -> tuple[set[str], list[str]]:
    flags: set[str] = set()
    rest: list[str] = []
    for index, arg in enumerate(args):
        if arg.startswith("-") and len(arg) > 1 and not rest:
            for letter in arg[1:]:
                if letter not in allowed:
                    raise HsiError(EX_USAGE, f"unknown option -{letter}")
                flags.add(letter)
            continue
        rest = list(args[index:])
        break
    return flags, rest


def _copy(source: Path, target: Path, *, keep_mtime: bool) -> int:
    tmp = target.with_name(f".{target.name}.hsi-{os.getpid()}")
    try:
        shutil.copyfile(source, tmp)
        if keep_mtime:
            info = source.stat()
            os.utime(tmp, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target.stat().st_size


def _ls_line(path: Path, shown: str) -> str:
    info = path.lstat()
    owner, group = user_name(info.st_uid), group_name(info.st_gid)
    stamp = time.strftime("%b %d %H:%M", time.localtime(info.st_mtime))
    return f"{stat.filemode(info.st_mode)} {info.st_nlink:>4} {owner:<9} {group:<9} {info.st_size:>12} {stamp} {shown}"


def main(
    argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    quiet = False
    index = 0
    while index < len(args) and args[index].startswith("-") and len(args[index]) > 1:
        option = args[index]
        if option in _OPTIONS_WITH_VALUE:
            index += 2
            continue
        if option not in _OPTIONS:
            _say(f"hsi: unknown option {option}")
            return EX_USAGE
        quiet = quiet or option == "-q"
        index += 1
    commands = split_commands(args[index:])
    if not commands:
        _say("hsi: the stand-in has no interactive mode; give commands on the command line")
        return EX_USAGE
    try:
        hpss = FakeHpss.from_environment(environ)
        hpss.ensure_home()
    except HpssUnavailable as exc:
        _say(f"hsi: {exc}")
        return EX_UNAVAILABLE
    session = Session(hpss, hpss.home, cwd or Path.cwd(), quiet=quiet)
    for command in commands:
        try:
            session.run(command)
        except _Quit:
            break
        except HsiError as exc:
            _say(str(exc))
            return exc.code
        except OSError as exc:
            _say(f"*** {command[0]}: {exc.filename or ''}: {exc.strerror}")
            return EX_CANTCREAT
    return 0


if __name__ == "__main__":
    sys.exit(main())
