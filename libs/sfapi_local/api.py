"""The Superfacility API endpoints sfapi-client 0.6 calls, answered from a ``LocalSlurm`` (HTTP-free; see ``server``).

What sfapi-client does, and what this answers (paths under ``/api/v1.2``; the token endpoint at ``/c2id/token``):

* Token: ``POST /c2id/token`` (form ``grant_type=client_credentials``, ``client_assertion_type=...jwt-bearer``,
  ``client_assertion=<JWT>``) -> ``{"access_token", "token_type": "Bearer", "expires_in": 600, "scope"}``; a bad
  assertion -> 401 ``{"error": "invalid_client", "error_description"}`` (see ``auth``). Every other endpoint but
  ``/status`` wants ``Authorization: Bearer <token>``, else 401 ``{"detail": ...}``.
* ``GET /status`` and ``GET /status/{name}`` (public): ``{"name", "full_name", "description", "system_type",
  "notes", "status", "updated_at"}``; ``client.compute(Machine.perlmutter)`` starts with this.
* ``POST /compute/jobs/{machine}`` (form ``job=<script text or path>``, ``isPath=true|false``, ``args``) ->
  ``{"task_id", "status": "OK", "error": null}`` at once; ``sbatch`` runs in the background.
* ``GET /tasks/{id}`` -> ``{"id", "status": "new"|"completed"|"failed", "result": <JSON text or null>}``; the result
  of a submission is ``{"status": "ok", "jobid": "<id>", "error": null}`` or ``{"status": "error", "error":
  "<sbatch's message>"}``, which sfapi-client turns into a job or an ``SfApiError``.
* ``GET /compute/jobs/{machine}?sacct=true|false&cached=false&kwargs=jobid=1,2`` (also ``kwargs=user=..``,
  ``kwargs=partition=..``) -> ``{"status": "OK", "output": [row, ...], "error": null}``. With ``sacct=false`` the
  rows are squeue's (``squeue --format=%all`` keys; only jobs not yet finished), with ``sacct=true`` sacct's (any
  job Slurm still knows, ``state`` ``"CANCELLED by <uid>"`` for cancelled ones, ``exitcode`` ``"3:0"``). A job
  nobody knows, or one ``lose_job`` hid, is simply absent -- sfapi-client then raises ``SfApiError("Job not found:
  <id>")``, as it does against NERSC.
* ``GET /compute/jobs/{machine}/{jobid}?sacct=`` -> the same shape for one job; an unknown job gives ``"status":
  "ERROR"`` with squeue's ``slurm_load_jobs error: Invalid job id specified`` (sacct=false) or an empty ``output``
  (sacct=true), as the two Slurm commands answer.
* ``DELETE /compute/jobs/{machine}/{jobid}`` -> ``scancel``; ``{"status": "OK"|"ERROR", "output", "error"}``.
* ``GET /utilities/ls/{machine}/{path}`` -> ``{"status", "entries": [{"perms", "hardlinks", "user", "group", "size",
  "date", "name"}], "error"}``, the rows of ``ls -la``: a folder gives its entries with ``.`` and ``..``, a file one
  entry named by its full path. A missing path is ``"status": "ERROR"`` with ls's "No such file or directory".
* ``GET /utilities/download/{machine}/{path}?binary=`` -> ``{"status", "file", "is_binary", "error"}``: the text, or
  base64 when ``binary=true``; a folder or a missing file is an ``ERROR`` with the reason. Paths are the site's
  own (this machine's), read with the server's rights.

QOS: the script's ``#SBATCH -q/--qos`` must be one the fake site offers (``qos=``, by default NERSC's list
including ``xfer``), else the task fails with Slurm's "Invalid qos specification"; Slurm itself has no accounting
here and would accept anything. The QOS (default ``regular``) is recorded and reported in the job rows.
"""

from __future__ import annotations

import base64
import collections
import datetime
import json
import secrets
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from beamflow.common.standin_http import Request, Response
from beamflow.sfapi_local.auth import ASSERTION_TYPE, AssertionVerifier, InvalidClient, load_public_key
from beamflow.sfapi_local.owners import group_name, user_name
from beamflow.sfapi_local.slurm import JobRecord, LocalSlurm

API_PREFIX = "/api/v1.2"
TOKEN_PATH = "/c2id/token"
DEFAULT_TOKEN_TTL = 600.0  # NERSC's access tokens live about ten minutes
# The QOS a NERSC user can name on Perlmutter (xfer is the one for HPSS transfers).
DEFAULT_QOS = (
    "regular",
    "debug",
    "shared",
    "preempt",
    "premium",
    "overrun",
    "interactive",
    "realtime",
    "jupyter",
    "xfer",
    "cron",
    "workflow",
)
DEFAULT_SYSTEMS: dict[str, tuple[str, str]] = {
    "perlmutter": ("Perlmutter", "compute"),
    "dtns": ("Data Transfer Nodes", "filesystem"),
    "dtn01": ("Data Transfer Node 01", "filesystem"),
    "archive": ("HPSS Archive (User)", "storage"),
}
INVALID_QOS = "sbatch: error: Batch job submission failed: Invalid qos specification"
INVALID_JOB_ID = "slurm_load_jobs error: Invalid job id specified"
_SQUEUE_CODES = {
    "PENDING": "PD",
    "RUNNING": "R",
    "COMPLETING": "CG",
    "CONFIGURING": "CF",
    "SUSPENDED": "S",
    "COMPLETED": "CD",
    "CANCELLED": "CA",
    "FAILED": "F",
    "TIMEOUT": "TO",
    "PREEMPTED": "PR",
    "NODE_FAIL": "NF",
    "OUT_OF_MEMORY": "OOM",
    "BOOT_FAIL": "BF",
    "DEADLINE": "DL",
    "REQUEUED": "RQ",
    "RESIZING": "RS",
    "REVOKED": "RV",
    "SIGNALING": "SI",
    "SPECIAL_EXIT": "SE",
    "STAGE_OUT": "SO",
    "STOPPED": "ST",
}


@dataclass
class Task:
    id: str
    status: str = "new"
    result: str | None = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "result": self.result}


@dataclass(frozen=True)
class SubmittedJob:
    """A job this API submitted: where its script is, and what it asked for that Slurm does not keep."""

    job_id: str
    task_id: str
    qos: str
    account: str | None
    folder: Path
    script: Path


@dataclass
class SystemStatus:
    name: str
    full_name: str
    system_type: str
    status: str = "active"
    description: str = "System is active"
    notes: list[str] = field(default_factory=list)
    updated_at: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sbatch_directives(script: str) -> list[str]:
    """The option words of the ``#SBATCH`` lines, read as sbatch reads them: up to the first command line."""
    words: list[str] = []
    for line in script.splitlines()[1 if script.startswith("#!") else 0 :]:
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        if stripped.startswith("#SBATCH"):
            text = stripped[len("#SBATCH") :]
            words += shlex.split(text.split(" #", 1)[0], posix=True)
    return words


def directive_value(words: Sequence[str], short: str, long: str) -> str | None:
    """The last value given for ``-x VALUE``/``-xVALUE``/``--long=VALUE``/``--long VALUE`` among ``words``."""
    value: str | None = None
    index = 0
    while index < len(words):
        word = words[index]
        if word in (short, long) and index + 1 < len(words):
            value = words[index + 1]
            index += 1
        elif word.startswith(long + "="):
            value = word[len(long) + 1 :]
        elif short and word.startswith(short) and not word.startswith("--") and len(word) > len(short):
            value = word[len(short) :]
        index += 1
    return value


def _stamp(epoch: float | None, missing: str) -> str:
    if epoch is None:
        return missing
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")


def _duration(seconds: float | None, *, squeue: bool = False) -> str:
    """Slurm's time layout: ``D-HH:MM:SS``, ``HH:MM:SS``; squeue shortens to ``H:MM:SS`` and ``M:SS``."""
    if seconds is None:
        return "UNLIMITED"
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if not squeue:
        return f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _elapsed(record: JobRecord, now: float) -> float:
    if record.start_time is None or record.state == "PENDING":
        return 0.0
    end = record.end_time if record.terminal and record.end_time else now
    return max(end - record.start_time, 0.0)


def squeue_row(record: JobRecord, qos: str, now: float | None = None) -> dict[str, str]:
    """One job as the SFAPI reports ``squeue`` (keys of ``squeue --format=%all``, every value a string)."""
    now = time.time() if now is None else now
    elapsed = _elapsed(record, now)
    limit = None if record.time_limit_minutes is None else record.time_limit_minutes * 60
    left = "UNLIMITED" if limit is None else _duration(max(limit - elapsed, 0), squeue=True)
    nodelist = record.nodes if record.state != "PENDING" else ""
    reason = record.reason if record.reason and record.reason != "None" else "None"
    return {
        "account": record.account or "(null)",
        "tres_per_node": "N/A",
        "min_cpus": "1",
        "min_tmp_disk": "0",
        "end_time": _stamp(record.end_time, "N/A"),
        "features": record.features or "(null)",
        "group": record.group,
        "over_subscribe": "OK",
        "jobid": record.job_id,
        "name": record.name,
        "comment": "(null)",
        "time_limit": _duration(limit, squeue=True),
        "min_memory": "0",
        "req_nodes": "",
        "command": record.command,
        "priority": "0.99998474074527",
        "qos": qos,
        "reason": reason,
        "st": _SQUEUE_CODES.get(record.state, record.state[:2]),
        "user": record.user,
        "reservation": "(null)",
        "wckey": "(null)",
        "exc_nodes": "",
        "nice": "0",
        "s:c:t": "*:*:*",
        "exec_host": nodelist or "n/a",
        "cpus": str(record.cpus),
        "nodes": str(record.node_count),
        "dependency": "(null)",
        "array_job_id": record.job_id,
        "sockets_per_node": "*",
        "cores_per_socket": "*",
        "threads_per_core": "*",
        "array_task_id": "N/A",
        "time_left": left,
        "time": _duration(elapsed, squeue=True),
        "nodelist": nodelist,
        "contiguous": "0",
        "partition": record.partition,
        "nodelist(reason)": nodelist if record.state != "PENDING" else f"({reason})",
        "start_time": _stamp(record.start_time, "N/A"),
        "state": record.state,
        "uid": str(record.uid),
        "submit_time": _stamp(record.submit_time, "N/A"),
        "licenses": record.licenses or "(null)",
        "core_spec": "N/A",
        "schednodes": "(null)",
        "work_dir": record.work_dir,
    }


def sacct_row(record: JobRecord, qos: str, now: float | None = None) -> dict[str, str]:
    """One job as the SFAPI reports ``sacct`` (lower-cased sacct field names, every value a string)."""
    now = time.time() if now is None else now
    elapsed = _elapsed(record, now)
    state = f"CANCELLED by {record.uid}" if record.state == "CANCELLED" else record.state
    limit = record.time_limit_minutes
    return {
        "account": record.account,
        "alloccpus": str(record.cpus if record.state != "PENDING" else 0),
        "allocnodes": str(record.node_count if record.state != "PENDING" else 0),
        "cluster": "perlmutter",
        "constraints": record.features,
        "derivedexitcode": record.derived_exit_code,
        "elapsed": _duration(elapsed),
        "elapsedraw": str(int(elapsed)),
        "eligible": _stamp(record.submit_time, "Unknown"),
        "end": _stamp(record.end_time if record.terminal else None, "Unknown"),
        "exitcode": record.exit_code,
        "gid": "",
        "group": record.group,
        "jobid": record.job_id,
        "jobidraw": record.job_id,
        "jobname": record.name,
        "ncpus": str(record.cpus),
        "nnodes": str(record.node_count),
        "nodelist": record.nodes or "None assigned",
        "partition": record.partition,
        "qos": qos,
        "reason": record.reason or "None",
        "reqcpus": str(record.cpus),
        "reqnodes": str(max(record.node_count, 1)),
        "reservation": "",
        "start": _stamp(record.start_time if record.state != "PENDING" else None, "Unknown"),
        "state": state,
        "submit": _stamp(record.submit_time, "Unknown"),
        "timelimit": _duration(None if limit is None else limit * 60),
        "timelimitraw": "UNLIMITED" if limit is None else str(limit),
        "uid": str(record.uid),
        "user": record.user,
        "workdir": record.work_dir,
    }


def _error(status: int, detail: str) -> Response:
    return Response(status, {"detail": detail})


class SfApi:
    """The endpoints, over a running ``LocalSlurm``. Thread-safe: the HTTP server calls ``handle`` from many threads.

    ``jobs_dir`` receives one folder per submission (the script, sbatch's default output files); ``job_env`` is
    added to the environment sbatch runs with, which Slurm passes on to the job (PATH with the htar/hsi stand-ins,
    the fake HPSS root, ...).
    """

    def __init__(
        self,
        slurm: LocalSlurm,
        jobs_dir: Path | str,
        *,
        clients: Mapping[str, str] | None = None,
        job_env: Mapping[str, str] | None = None,
        qos: Iterable[str] = DEFAULT_QOS,
        default_qos: str = "regular",
        machines: Iterable[str] = ("perlmutter",),
        token_ttl: float = DEFAULT_TOKEN_TTL,
    ) -> None:
        self.slurm = slurm
        self.jobs_dir = Path(jobs_dir)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.job_env = dict(job_env or {})
        self.qos = set(qos)
        self.default_qos = default_qos
        self.machines = set(machines)
        self.token_ttl = token_ttl
        self.verifier = AssertionVerifier({})
        for client_id, public_key_pem in (clients or {}).items():
            self.add_client(client_id, public_key_pem)
        self.systems = {name: SystemStatus(name, full, kind) for name, (full, kind) in DEFAULT_SYSTEMS.items()}
        # (method, path, status) of the latest requests, for tests to assert on.
        self.calls: collections.deque[tuple[str, str, int]] = collections.deque(maxlen=10_000)
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._tasks: dict[str, Task] = {}
        self._jobs: dict[str, SubmittedJob] = {}
        self._lost: set[str] = set()
        self._task_counter = 0
        self._threads: list[threading.Thread] = []

    # -- test hooks --

    def add_client(self, client_id: str, public_key_pem: str) -> None:
        self.verifier.add_client(client_id, load_public_key(public_key_pem))

    def remove_client(self, client_id: str) -> None:
        self.verifier.remove_client(client_id)

    def lose_job(self, job_id: str | int) -> None:
        """From now on answer as if the job did not exist (the SFAPI sometimes forgets jobs)."""
        with self._lock:
            self._lost.add(str(job_id))

    def find_job(self, job_id: str | int) -> None:
        """Undo ``lose_job``."""
        with self._lock:
            self._lost.discard(str(job_id))

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid (clients then get 401 until they fetch a new one)."""
        with self._lock:
            self._tokens.clear()

    def set_system_status(
        self, name: str, status: str, description: str | None = None, notes: Sequence[str] = ()
    ) -> None:
        """Change what ``/status/{name}`` says (``active``, ``degraded``, ``unavailable``, ``other``)."""
        with self._lock:
            system = self.systems[name]
            system.status = status
            system.description = description or {"active": "System is active"}.get(status, f"System is {status}")
            system.notes = list(notes)
            system.updated_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    def submitted(self, job_id: str | int) -> SubmittedJob | None:
        with self._lock:
            return self._jobs.get(str(job_id))

    def wait_for_submissions(self, timeout: float = 30.0) -> None:
        """Wait until every background ``sbatch`` has finished (tests use it before stopping)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(deadline - time.monotonic(), 0))

    # -- dispatch --

    def handle(self, request: Request) -> Response:
        response = self._route(request)
        with self._lock:
            self.calls.append((request.method, request.path, response.status))
        return response

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if path == TOKEN_PATH:
            return self._token(request) if request.method == "POST" else _error(405, "Method Not Allowed")
        if not path.startswith(API_PREFIX):
            return _error(404, "Not Found")
        parts = path[len(API_PREFIX) :].strip("/").split("/")
        if parts[0] == "status" and request.method == "GET":
            return self._status(parts[1:])
        client = self._authenticate(request)
        if client is None:
            return _error(401, "Not authenticated: a valid Bearer access token is required")
        if parts[0] == "utilities" and request.method == "GET" and len(parts) >= 4:
            return self._utility(request, parts[1], parts[2], unquote(request.path.split(f"/{parts[2]}/", 1)[1]))
        routes: dict[tuple[str, int, str], Callable[[Request, list[str]], Response]] = {
            ("POST", 3, "compute"): self._submit,
            ("GET", 3, "compute"): self._job_list,
            ("GET", 4, "compute"): self._job_one,
            ("DELETE", 4, "compute"): self._cancel,
            ("GET", 1, "tasks"): self._task_list,
            ("GET", 2, "tasks"): self._task_one,
        }
        handler = routes.get((request.method, len(parts), parts[0]))
        if handler is None or (parts[0] == "compute" and parts[1] != "jobs"):
            return _error(404, "Not Found")
        return handler(request, parts)

    # -- authentication --

    def _token(self, request: Request) -> Response:
        form = request.form()

        def value(name: str) -> str:
            return (form.get(name) or [""])[0]

        if value("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"})
        if value("client_assertion_type") != ASSERTION_TYPE or not value("client_assertion"):
            return Response(
                401, {"error": "invalid_client", "error_description": "Client authentication failed: no JWT assertion"}
            )
        host = request.header("Host")
        audiences = {f"http://{host}{request.path}"} if host else set()
        try:
            client_id = self.verifier.verify(
                value("client_assertion"), audiences=audiences, client_id=value("client_id") or None
            )
        except InvalidClient as exc:
            return Response(
                401,
                {"error": "invalid_client", "error_description": f"Client authentication failed: {exc}"},
                {"WWW-Authenticate": 'Bearer error="invalid_client"'},
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._tokens = {key: entry for key, entry in self._tokens.items() if entry[1] > now}
            self._tokens[token] = (client_id, now + self.token_ttl)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl), "scope": "sfapi"}
        return Response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authenticate(self, request: Request) -> str | None:
        scheme, _, token = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        with self._lock:
            entry = self._tokens.get(token.strip())
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    # -- status --

    def _status(self, rest: list[str]) -> Response:
        with self._lock:
            if not rest:
                return Response(200, [system.to_json() for system in self.systems.values()])
            system = self.systems.get(rest[0]) if len(rest) == 1 else None
            if system is None:
                return _error(404, f"System {'/'.join(rest)} not found")
            return Response(200, system.to_json())

    # -- tasks --

    def _task_list(self, request: Request, parts: list[str]) -> Response:
        with self._lock:
            return Response(200, {"tasks": [task.to_json() for task in self._tasks.values()]})

    def _task_one(self, request: Request, parts: list[str]) -> Response:
        with self._lock:
            task = self._tasks.get(parts[1])
            return _error(404, f"Task {parts[1]} not found") if task is None else Response(200, task.to_json())

    def _new_task(self) -> Task:
        with self._lock:
            self._task_counter += 1
            task = Task(str(self._task_counter))
            self._tasks[task.id] = task
            return task

    def _finish_task(self, task: Task, status: str, result: Mapping[str, Any]) -> None:
        with self._lock:
            task.result = json.dumps(result)
            task.status = status

    # -- jobs --

    def _machine_error(self, machine: str) -> Response | None:
        if machine in self.machines:
            return None
        return Response(
            422,
            {"detail": [{"loc": ["path", "machine"], "msg": f"no batch system on {machine!r}", "type": "value_error"}]},
        )

    def _submit(self, request: Request, parts: list[str]) -> Response:
        machine = parts[2]
        problem = self._machine_error(machine)
        if problem is not None:
            return problem
        form = request.form()
        job = (form.get("job") or [""])[0]
        if not job:
            detail = [{"loc": ["body", "job"], "msg": "field required", "type": "value_error.missing"}]
            return Response(422, {"detail": detail})
        is_path = (form.get("isPath") or ["false"])[0].lower() == "true"
        args = form.get("args", [])
        task = self._new_task()
        thread = threading.Thread(
            target=self._run_submission, args=(task, job, is_path, args), name=f"sfapi-sbatch-{task.id}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return Response(200, {"task_id": task.id, "status": "OK", "error": None})

    def _run_submission(self, task: Task, job: str, is_path: bool, args: list[str]) -> None:
        try:
            folder = self.jobs_dir / f"task-{int(task.id):06d}"
            folder.mkdir(parents=True, exist_ok=True)
            if is_path:
                script = Path(job)
                if not script.is_file():
                    self._finish_task(
                        task, "completed", {"status": "error", "error": f"sbatch: error: Unable to open file {job}"}
                    )
                    return
                workdir = script.parent
                text = script.read_text(errors="replace")
            else:
                script = folder / "job.sh"
                script.write_text(job)
                workdir, text = folder, job
            words = sbatch_directives(text)
            qos = directive_value(words, "-q", "--qos") or self.default_qos
            if qos not in self.qos:
                self._finish_task(task, "completed", {"status": "error", "error": INVALID_QOS})
                return
            env = self.slurm.env
            env.update(self.job_env)
            result = self.slurm.run(
                ["sbatch", "--parsable", str(script), *args], cwd=workdir, env=env, check=False, timeout=60
            )
            if result.returncode != 0:
                message = (result.stderr or result.stdout).strip() or f"sbatch exited with {result.returncode}"
                self._finish_task(task, "completed", {"status": "error", "error": message})
                return
            job_id = result.stdout.strip().split(";")[0]
            account = directive_value(words, "-A", "--account")
            record = SubmittedJob(job_id, task.id, qos, account, folder, script)
            with self._lock:
                self._jobs[job_id] = record
            (folder / "submitted.json").write_text(
                json.dumps({"jobid": job_id, "qos": qos, "account": account, "script": str(script)})
            )
            self._finish_task(task, "completed", {"status": "ok", "jobid": job_id, "error": None})
        except Exception as exc:  # the task must end, whatever happened
            self._finish_task(task, "failed", {"status": "error", "error": f"{type(exc).__name__}: {exc}"})

    def _qos_of(self, record: JobRecord) -> str:
        with self._lock:
            submitted = self._jobs.get(record.job_id)
        if submitted is not None:
            return submitted.qos
        return record.qos or "normal"

    def _visible_jobs(self) -> dict[str, JobRecord]:
        records = self.slurm.jobs()
        with self._lock:
            lost = set(self._lost)
        return {job_id: record for job_id, record in records.items() if job_id not in lost}

    @staticmethod
    def _sacct(request: Request) -> bool:
        return (request.query.get("sacct") or ["false"])[0].lower() == "true"

    def _job_list(self, request: Request, parts: list[str]) -> Response:
        problem = self._machine_error(parts[2])
        if problem is not None:
            return problem
        sacct = self._sacct(request)
        filters: dict[str, set[str]] = {}
        for item in request.query.get("kwargs", []):
            key, _, value = item.partition("=")
            filters.setdefault(key.strip(), set()).update(v.strip() for v in value.split(",") if v.strip())
        try:
            records = self._visible_jobs()
        except Exception as exc:
            return Response(200, {"status": "ERROR", "output": [], "error": str(exc)})
        now = time.time()
        rows: list[dict[str, str]] = []
        for job_id in sorted(records, key=lambda value: int(value) if value.isdigit() else 0):
            record = records[job_id]
            if "jobid" in filters and job_id not in filters["jobid"]:
                continue
            if "user" in filters and record.user not in filters["user"]:
                continue
            if "partition" in filters and record.partition not in filters["partition"]:
                continue
            if sacct:
                rows.append(sacct_row(record, self._qos_of(record), now))
            elif not record.terminal:
                rows.append(squeue_row(record, self._qos_of(record), now))
        return Response(200, {"status": "OK", "output": rows, "error": None})

    def _job_one(self, request: Request, parts: list[str]) -> Response:
        problem = self._machine_error(parts[2])
        if problem is not None:
            return problem
        sacct = self._sacct(request)
        try:
            record = self._visible_jobs().get(parts[3])
        except Exception as exc:
            return Response(200, {"status": "ERROR", "output": [], "error": str(exc)})
        if record is None:
            if sacct:
                return Response(200, {"status": "OK", "output": [], "error": None})
            return Response(200, {"status": "ERROR", "output": [], "error": INVALID_JOB_ID})
        if sacct:
            return Response(200, {"status": "OK", "output": [sacct_row(record, self._qos_of(record))], "error": None})
        output = [] if record.terminal else [squeue_row(record, self._qos_of(record))]
        return Response(200, {"status": "OK", "output": output, "error": None})

    def _cancel(self, request: Request, parts: list[str]) -> Response:
        problem = self._machine_error(parts[2])
        if problem is not None:
            return problem
        job_id = parts[3]
        with self._lock:
            lost = job_id in self._lost
        message = f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified"
        if lost or not job_id.isdigit():
            return Response(200, {"status": "ERROR", "output": "", "error": message})
        result = self.slurm.run(["scancel", job_id], check=False, timeout=30)
        if result.returncode != 0:
            return Response(200, {"status": "ERROR", "output": "", "error": result.stderr.strip() or message})
        return Response(200, {"status": "OK", "output": result.stdout, "error": None})

    # -- utilities: the site's files --

    def _utility(self, request: Request, action: str, machine: str, path: str) -> Response:
        problem = self._machine_error(machine)
        if problem is not None:
            return problem
        path = "/" + path.lstrip("/")
        if action == "ls":
            return self._ls(Path(path))
        if action == "download":
            binary = (request.query.get("binary") or ["false"])[0].lower() == "true"
            return self._download(Path(path), binary)
        return _error(404, "Not Found")

    @staticmethod
    def _ls(path: Path) -> Response:
        try:
            if path.is_dir() and not path.is_symlink():
                rows = [_ls_entry(path, "."), _ls_entry(path.parent, "..")]
                rows += [_ls_entry(child, child.name) for child in sorted(path.iterdir())]
            else:
                rows = [_ls_entry(path, str(path))]
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return Response(200, {"status": "ERROR", "entries": [], "error": f"ls: cannot access '{path}': {reason}"})
        return Response(200, {"status": "OK", "entries": rows, "error": None})

    @staticmethod
    def _download(path: Path, binary: bool) -> Response:
        try:
            data = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            return Response(200, {"status": "ERROR", "file": None, "is_binary": binary, "error": f"{path}: {reason}"})
        if binary:
            return Response(
                200, {"status": "OK", "file": base64.b64encode(data).decode(), "is_binary": True, "error": None}
            )
        text = data.decode("utf-8", "replace")
        return Response(200, {"status": "OK", "file": text, "is_binary": False, "error": None})


def _ls_entry(path: Path, name: str) -> dict[str, Any]:
    info = path.lstat()
    user, group = user_name(info.st_uid), group_name(info.st_gid)
    return {
        "perms": stat.filemode(info.st_mode),
        "hardlinks": info.st_nlink,
        "user": user,
        "group": group,
        "size": info.st_size,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(info.st_mtime)),
        "name": name,
    }
