"""A real single-node Slurm for tests and tools: ``with LocalSlurm(state_dir) as slurm: ...``.

``LocalSlurm`` installs ``slurm-wlm`` and ``munge`` with apt-get when ``slurmctld`` is missing (only as root; else
``SlurmUnavailable`` says what to run), writes a munge key and a ``slurm.conf`` into its state folder, starts
``munged``, ``slurmctld`` and ``slurmd -N localhost`` in the foreground as its own child processes, and returns
once ``sinfo`` shows the node idle (polled against a deadline). ``stop()`` cancels the jobs left in the queue,
then ends the three daemons, by their process ids.

The configuration is NERSC-shaped where batch scripts notice: one node ``localhost`` with ``Features=cron,cpu``
(``#SBATCH -C cron`` / ``-C cpu``), ``Licenses=SCRATCH:1000`` (``--licenses=SCRATCH``), enough CPUs and
``RealMemory`` for a few concurrent jobs, one partition ``regular``, no time limit. There is no accounting
database: finished jobs stay readable from the controller for ``MinJobAge`` seconds (default an hour), and every
finished job is also appended to a job-completion log (``jobcomp/filetxt``) in the state folder. ``jobs()`` reads
the controller with ``squeue --json`` (what ``scontrol show job`` prints, machine-readable; in 22.05 it lists
finished jobs too and ignores filters) and the completion log, and merges them; the SFAPI stand-in's "sacct"
answers come from that. Batch jobs are scheduled within about a second (``batch_sched_delay=0``), except the
very first after a start, which waits for the controller's first scheduling pass (about 3 s).

QOS: without accounting Slurm accepts any ``--qos`` and drops it (``scontrol show job`` says ``QOS=(null)``; even
``-q nonsense`` is accepted). So Slurm cannot check ``#SBATCH -q xfer``; the SFAPI stand-in does instead (it
knows which QOS the fake site offers, refuses others with Slurm's own "Invalid qos specification", records the
one asked for and reports it in job status). Running slurmdbd and a database for this was judged not worth it.

Isolation: each LocalSlurm has its own state folder, a random cluster name, a fresh pair of free loopback ports
(``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny``, so nothing listens beyond 127.0.0.1), its own munge
socket and key, and pid files and spool in its own folders; two test sessions on one machine do not meet. The
sockets live in a short folder (``<state>/run``, or a ``/tmp/bfslurm-*`` folder when the state path is long)
because Unix socket paths are limited to 107 bytes. Everything runs as root: slurmd must, to start jobs.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from beamflow.common.system_packages import PackageUnavailable, ensure_programs

SLURM_PACKAGES = ("slurm-wlm", "munge")
SYSTEM_PATHS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# Job states after which a job never runs again (as sfapi-client's TERMINAL_STATES, plus Slurm's other ends).
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
)
_SOCKET_DIR_LIMIT = 70


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here; the message says why and what to do."""


def _search_path(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    parts = [part for part in env.get("PATH", "").split(os.pathsep) if part]
    return os.pathsep.join(parts + [path for path in SYSTEM_PATHS if path not in parts])


def find_binary(name: str) -> str | None:
    """The Slurm/munge program ``name`` on PATH or in the system's sbin folders."""
    return shutil.which(name, path=_search_path())


def ensure_slurm_installed(*, timeout: float = 1200.0) -> float:
    """Install slurm-wlm and munge with apt-get when ``slurmctld`` is missing; the seconds it took (0 if present).

    Only root can install: otherwise ``SlurmUnavailable`` names the command to run.
    """
    needed = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo", "scancel")
    try:
        return ensure_programs(needed, SLURM_PACKAGES, find=find_binary, timeout=timeout)
    except PackageUnavailable as exc:
        raise SlurmUnavailable(str(exc)) from None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free on ``host`` a moment ago."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def exit_code_string(wait_status: int) -> str:
    """Slurm's ``exit:signal`` form of a wait status, as sacct prints ``ExitCode``."""
    signal_number = wait_status & 0x7F
    if signal_number:
        return f"0:{signal_number}"
    return f"{(wait_status >> 8) & 0xFF}:0"


@dataclass(frozen=True)
class JobRecord:
    """What Slurm knows about one job, from the controller or (after it forgot) the job-completion log."""

    job_id: str
    name: str
    state: str
    reason: str
    exit_code: str
    derived_exit_code: str
    user: str
    uid: int
    group: str
    account: str
    partition: str
    qos: str
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    time_limit_minutes: int | None
    nodes: str
    node_count: int
    cpus: int
    work_dir: str
    command: str
    stdout: str
    stderr: str
    features: str
    licenses: str
    source: str  # "controller" or "jobcomp"

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


def _epoch(value: object) -> float | None:
    if isinstance(value, dict):  # newer Slurm wraps numbers as {"set": .., "number": ..}
        value = value.get("number") if value.get("set", True) else None
    if isinstance(value, int | float) and value > 0:
        return float(value)
    return None


def _minutes(value: object) -> int | None:
    if isinstance(value, dict):
        if value.get("infinite"):
            return None
        value = value.get("number") if value.get("set", True) else None
    return int(value) if isinstance(value, int | float) and 0 < value < 2**31 - 1 else None


def _int(value: object) -> int:
    if isinstance(value, dict):
        value = value.get("number", 0)
    return int(value) if isinstance(value, int | float) else 0


def _text(value: object) -> str:
    return "" if value is None else str(value)


def record_from_squeue(job: Mapping[str, object]) -> JobRecord:
    """A JobRecord from one entry of ``squeue --json`` (Slurm 22.05's openapi v0.0.38 shape)."""
    state = job.get("job_state")
    if isinstance(state, list):
        state = state[0] if state else "UNKNOWN"
    return JobRecord(
        job_id=str(job.get("job_id")),
        name=_text(job.get("name")),
        state=_text(state),
        reason=_text(job.get("state_reason")),
        exit_code=exit_code_string(_int(job.get("exit_code"))),
        derived_exit_code=exit_code_string(_int(job.get("derived_exit_code"))),
        user=_text(job.get("user_name")),
        uid=_int(job.get("user_id")),
        group=_text(job.get("group_name")),
        account=_text(job.get("account")),
        partition=_text(job.get("partition")),
        qos=_text(job.get("qos")),
        submit_time=_epoch(job.get("submit_time")),
        start_time=_epoch(job.get("start_time")),
        end_time=_epoch(job.get("end_time")),
        time_limit_minutes=_minutes(job.get("time_limit")),
        nodes=_text(job.get("nodes")),
        node_count=_int(job.get("node_count")),
        cpus=_int(job.get("cpus")),
        work_dir=_text(job.get("current_working_directory")),
        command=_text(job.get("command")),
        stdout=_text(job.get("standard_output")),
        stderr=_text(job.get("standard_error")),
        features=_text(job.get("features")),
        licenses=_text(job.get("licenses")),
        source="controller",
    )


_JOBCOMP_FIELD = re.compile(r"(\w+)=(.*?)(?=\s\w+=|\s*$)")


def _jobcomp_time(value: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def record_from_jobcomp(line: str) -> JobRecord | None:
    """A JobRecord from one line of the ``jobcomp/filetxt`` log, or None for a line that is not a job."""
    fields = dict(_JOBCOMP_FIELD.findall(line.strip()))
    if "JobId" not in fields:
        return None
    user, _, uid = fields.get("UserId", "").partition("(")
    group = fields.get("GroupId", "").partition("(")[0]
    limit = fields.get("TimeLimit", "")
    return JobRecord(
        job_id=fields["JobId"],
        name=fields.get("Name", ""),
        state=fields.get("JobState", "").split()[0] if fields.get("JobState") else "",
        reason="",
        exit_code=fields.get("ExitCode", "0:0"),
        derived_exit_code=fields.get("DerivedExitCode", "0:0"),
        user=user,
        uid=int(uid.rstrip(")")) if uid.rstrip(")").isdigit() else 0,
        group=group,
        account=fields.get("Account", ""),
        partition=fields.get("Partition", ""),
        qos=fields.get("QOS", ""),
        submit_time=_jobcomp_time(fields.get("SubmitTime", "")),
        start_time=_jobcomp_time(fields.get("StartTime", "")),
        end_time=_jobcomp_time(fields.get("EndTime", "")),
        time_limit_minutes=int(limit) if limit.isdigit() else None,
        nodes=fields.get("NodeList", ""),
        node_count=int(fields.get("NodeCnt", "0") or 0),
        cpus=int(fields.get("ProcCnt", "0") or 0),
        work_dir=fields.get("WorkDir", ""),
        command="",
        stdout="",
        stderr="",
        features="",
        licenses="",
        source="jobcomp",
    )


def _clean_environment(base: Mapping[str, str]) -> dict[str, str]:
    """``base`` without the variables of any Slurm job we may be running inside, which would steer sbatch."""
    prefixes = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_", "SACCT_", "SCONTROL_")
    return {key: value for key, value in base.items() if not key.startswith(prefixes)}


class LocalSlurm:
    """A single-node Slurm cluster of its own (munged, slurmctld, slurmd) rooted in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path | str,
        *,
        cpus: int = 8,
        real_memory_mb: int = 8000,
        features: Sequence[str] = ("cron", "cpu"),
        licenses: Mapping[str, int] | None = None,
        partition: str = "regular",
        min_job_age: int = 3600,
        kill_wait: int = 2,
        start_timeout: float = 30.0,
        install: bool = True,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.cpus = cpus
        self.real_memory_mb = real_memory_mb
        self.features = tuple(features)
        self.licenses = dict(licenses) if licenses is not None else {"SCRATCH": 1000}
        self.partition = partition
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.start_timeout = start_timeout
        self.install = install
        self.node_name = "localhost"
        self.cluster_name = "bf" + secrets.token_hex(4)
        self.install_seconds = 0.0
        self.start_seconds = 0.0
        self.ctld_port = 0
        self.slurmd_port = 0
        self._run_dir: Path | None = None
        self._own_run_dir = False
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[BinaryIO] = []

    # -- paths and environment --

    @property
    def conf_path(self) -> Path:
        return self.state_dir / "slurm.conf"

    @property
    def jobcomp_path(self) -> Path:
        return self.state_dir / "jobcomp.log"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def run_dir(self) -> Path:
        if self._run_dir is None:
            raise RuntimeError("LocalSlurm has not been started")
        return self._run_dir

    @property
    def munge_socket(self) -> Path:
        return self.run_dir / "munge.socket"

    @property
    def running(self) -> bool:
        return bool(self._processes)

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm commands (and what sbatch passes on to jobs): ``SLURM_CONF`` and a PATH that
        reaches the Slurm programs; variables of an enclosing Slurm job are removed."""
        env = _clean_environment(os.environ)
        env["SLURM_CONF"] = str(self.conf_path)
        env["PATH"] = _search_path(env)
        return env

    # -- lifecycle --

    def start(self) -> LocalSlurm:
        """Install if needed, configure, start the daemons and wait for the node to be idle; returns self."""
        if self._processes:
            raise RuntimeError("LocalSlurm is already running")
        if self.install:
            self.install_seconds = ensure_slurm_installed()
        if os.geteuid() != 0:
            raise SlurmUnavailable("LocalSlurm must run as root: slurmd starts jobs as their owners")
        for name in ("slurmctld", "slurmd", "munged"):
            if find_binary(name) is None:
                raise SlurmUnavailable(f"{name} is not installed (apt-get install -y {' '.join(SLURM_PACKAGES)})")
        started = time.monotonic()
        self._prepare_folders()
        last_error: SlurmUnavailable | None = None
        for _attempt in range(3):
            self.ctld_port, self.slurmd_port = free_ports(2)
            self._write_config()
            try:
                self._start_daemons()
            except SlurmUnavailable as exc:
                self._stop_daemons()
                last_error = exc
                if "Address already in use" not in str(exc):
                    break
                continue
            self.start_seconds = time.monotonic() - started
            atexit.register(self.stop)
            return self
        self._release_run_dir()
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """Cancel what is left in the queue, end the daemons, remove the socket folder. Idempotent."""
        if not self._processes:
            return
        atexit.unregister(self.stop)
        with contextlib.suppress(Exception):
            self._cancel_all()
        self._stop_daemons()
        self._release_run_dir()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare_folders(self) -> None:
        for folder in (self.state_dir, self.log_dir, self.state_dir / "ctld", self.state_dir / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        candidate = self.state_dir / "run"
        if len(str(candidate)) <= _SOCKET_DIR_LIMIT:
            candidate.mkdir(exist_ok=True)
            self._run_dir, self._own_run_dir = candidate, False
        else:
            self._run_dir, self._own_run_dir = Path(tempfile.mkdtemp(prefix="bfslurm-", dir="/tmp")), True
        self.run_dir.chmod(0o711)
        (self.run_dir / "slurmd").mkdir(exist_ok=True)
        key = self.state_dir / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)

    def _release_run_dir(self) -> None:
        if self._run_dir is not None and self._own_run_dir:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        self._run_dir = None

    def _write_config(self) -> None:
        licenses = ",".join(f"{name}:{count}" for name, count in self.licenses.items())
        lines = [
            f"ClusterName={self.cluster_name}",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.state_dir / 'ctld'}",
            f"SlurmdSpoolDir={self.run_dir / 'slurmd'}",
            f"SlurmctldPidFile={self.run_dir / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.run_dir / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.log_dir / 'slurmctld.log'}",
            f"SlurmdLogFile={self.log_dir / 'slurmd.log'}",
            f"TmpFS={self.state_dir / 'tmp'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp_path}",
            "SchedulerType=sched/builtin",
            # Batch jobs would wait up to 3 s (the default delay) for the next scheduling pass.
            "SchedulerParameters=batch_sched_delay=0",
            "MailProg=/bin/true",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "ReturnToService=2",
            f"MinJobAge={self.min_job_age}",
            f"KillWait={self.kill_wait}",
            "InactiveLimit=0",
            "SlurmdParameters=config_overrides",
            f"Licenses={licenses}" if licenses else "",
            (
                f"NodeName={self.node_name} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={self.cpus} "
                f"RealMemory={self.real_memory_mb} Features={','.join(self.features) or 'none'} State=UNKNOWN"
            ),
            f"PartitionName={self.partition} Nodes={self.node_name} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf_path.write_text("\n".join(line for line in lines if line) + "\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.log_dir / f"{name}.out").open("ab")
        self._logs.append(log)
        self._processes[name] = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.state_dir
        )

    def _start_daemons(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        munged = find_binary("munged")
        assert munged is not None
        # --force: munged otherwise insists that every folder above its socket be world-executable.
        self._spawn(
            "munged",
            [
                munged,
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={self.state_dir / 'munge.key'}",
                f"--pid-file={self.run_dir / 'munged.pid'}",
                f"--log-file={self.log_dir / 'munged.log'}",
                f"--seed-file={self.state_dir / 'munged.seed'}",
            ],
        )
        self._wait("munged's socket", lambda: self.munge_socket.exists(), deadline)
        conf = str(self.conf_path)
        self._spawn("slurmctld", [str(find_binary("slurmctld")), "-D", "-i", "-f", conf])
        self._wait("slurmctld", lambda: self._command_ok(["scontrol", "ping"], "UP"), deadline)
        self._spawn("slurmd", [str(find_binary("slurmd")), "-D", "-N", self.node_name, "-f", conf])
        self._wait("the node to be idle", self._node_idle, deadline)

    def _command_ok(self, command: list[str], expected: str) -> bool:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=10, check=False)
        return result.returncode == 0 and expected in result.stdout

    def _node_idle(self) -> bool:
        result = self.run(["sinfo", "-h", "-N", "-n", self.node_name, "-o", "%T"], check=False, timeout=10)
        return result.returncode == 0 and result.stdout.strip().rstrip("*") == "idle"

    def _wait(self, what: str, condition: Callable[[], bool], deadline: float) -> None:
        while True:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {process.returncode}:\n{self._log_tail()}")
            if condition():
                return
            if time.monotonic() > deadline:
                raise SlurmUnavailable(
                    f"timed out after {self.start_timeout} s waiting for {what}:\n{self._log_tail()}"
                )
            time.sleep(0.05)

    def _log_tail(self, lines: int = 15) -> str:
        tails = []
        for path in sorted(self.log_dir.glob("*")):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                tails.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(tails)

    def _cancel_all(self) -> None:
        listed = self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
        job_ids = listed.stdout.split()
        if not job_ids:
            return
        self.run(["scancel", *job_ids], check=False, timeout=10)
        deadline = time.monotonic() + self.kill_wait + 5
        while time.monotonic() < deadline:
            if not self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=10).stdout.split():
                return
            time.sleep(0.1)

    def _stop_daemons(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            process = self._processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self._processes.clear()
        for log in self._logs:
            with contextlib.suppress(OSError):
                log.close()
        self._logs.clear()

    # -- using it --

    def run(
        self,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30.0,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command (``sbatch``, ``squeue``, ...) against this cluster; text output captured."""
        result = subprocess.run(
            list(command),
            env=dict(env) if env is not None else self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, list(command), result.stdout, result.stderr)
        return result

    def sbatch(
        self,
        script: Path | str,
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> str:
        """Submit a batch script file; returns the job id. ``env`` replaces ``self.env`` (start from it)."""
        result = self.run(["sbatch", "--parsable", *args, str(script)], cwd=cwd, env=env)
        return result.stdout.strip().split(";")[0]

    def jobs(self) -> dict[str, JobRecord]:
        """Every job Slurm can still tell about: the controller's, else the job-completion log's last record.

        A job the controller shows as COMPLETING (its final state not kept) takes its state from the completion
        log once it is there, as sacct would.
        """
        records: dict[str, JobRecord] = {}
        with contextlib.suppress(OSError):
            for line in self.jobcomp_path.read_text(errors="replace").splitlines():
                record = record_from_jobcomp(line)
                if record is not None:
                    records[record.job_id] = record
        listed = self.run(["squeue", "--json"], check=True, timeout=30)
        for job in json.loads(listed.stdout).get("jobs", []):
            record = record_from_squeue(job)
            finished = records.get(record.job_id)
            if record.state == "COMPLETING" and finished is not None:
                record = _with_final_state(record, finished)
            records[record.job_id] = record
        return records

    def job(self, job_id: str | int) -> JobRecord | None:
        return self.jobs().get(str(job_id))

    def wait_for_job(self, job_id: str | int, timeout: float = 60.0) -> JobRecord:
        """Poll until the job reaches a terminal state (``TimeoutError`` after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.job(job_id)
            if record is not None and record.terminal:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record.state if record else 'unknown'} after {timeout} s")
            time.sleep(0.1)


def _with_final_state(record: JobRecord, finished: JobRecord) -> JobRecord:
    values = dict(record.__dict__)
    values.update(state=finished.state, exit_code=finished.exit_code, derived_exit_code=finished.derived_exit_code)
    return JobRecord(**values)
