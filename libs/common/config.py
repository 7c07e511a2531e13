"""beamflow's configuration: one YAML file, validated by pydantic, cross-checked as a whole.

A beamline is configuration, not code: which endpoint it watches, how files form a scan, and where copies
go in which order. ``load_config`` returns a validated ``BeamflowConfig`` or raises ``ConfigError`` listing
every problem with the dotted path of the field that holds it (what ``beamflow check`` prints).

Paths in the file may use ``${VAR}`` or ``${VAR:-default}``; relative paths are taken from the folder of
the config file, so a config works from any working directory.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from beamflow.common import subjects
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.catalog_config import BeamlineCatalog, CatalogConnection
from beamflow.common.compute_config import AnalysisPolicy, ComputeSiteConfig
from beamflow.common.durations import Duration
from beamflow.common.endpoints import (
    EndpointConfig,
    FilesystemEndpoint,
    GlobusEndpoint,
    HpssEndpoint,
    TarArchiveEndpoint,
)
from beamflow.common.errors import ConfigError
from beamflow.common.secrets import SecretRef
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsTls(_Section):
    """TLS to the NATS servers: the CA that signed them, and a client certificate where they require one."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class NatsConfig(_Section):
    url: str | None = Field(
        default=None, description="An existing server (several comma-joined for a cluster); unset = the embedded one."
    )
    credentials_file: Path | None = Field(
        default=None, description="A NATS .creds file (user JWT and nkey seed); e.g. ${BEAMFLOW_NATS_CREDS}."
    )
    nkey_seed: SecretRef | None = Field(default=None, description="An nkey seed: {env: NAME} or {file_env: NAME}.")
    user: SecretRef | None = Field(default=None, description="User name for user/password auth: {env: NAME}.")
    password: SecretRef | None = Field(default=None, description="Its password: {env: NAME} or {file_env: NAME}.")
    tls: NatsTls | None = None
    data_dir: Path = Field(default=Path(".beamflow/nats"), description="JetStream store of the embedded server.")
    port: int = Field(default=4222, ge=0, le=65535, description="Client port of the embedded server; 0 = any free.")
    replicas: int = Field(default=1, ge=1, le=5, description="Replicas of every stream and consumer we create.")
    reconnect_time_wait: Duration = timedelta(seconds=2)
    max_reconnect_attempts: int = Field(default=-1, description="-1 = keep trying forever.")
    connect_timeout: Duration = timedelta(seconds=5)


class DeliveryConfig(_Section):
    """How hard a service tries before a message goes to the dead letters."""

    max_deliver: int = Field(default=6, ge=1)
    ack_wait: Duration = timedelta(seconds=30)
    backoff: list[Duration] = Field(
        default_factory=lambda: [timedelta(seconds=s) for s in (1, 5, 30, 120, 600)],
        description="nak delay after the 1st, 2nd, ... failed delivery; the last entry repeats.",
    )
    concurrency: int = Field(default=16, ge=1, description="Messages one service process handles at once.")
    drain_timeout: Duration = timedelta(seconds=30)
    duplicate_window: Duration = timedelta(hours=1)
    event_max_age: Duration = timedelta(days=30)
    dead_letter_max_age: Duration = timedelta(days=180)


class RetentionConfig(_Section):
    """How holds are kept on the bus (the periods themselves are per endpoint: ``endpoints.<name>.retention``)."""

    expired_kept_for: Duration = Field(
        default=timedelta(days=30),
        description="How long an expired hold waits for the pruner; the pruner must not be down longer.",
    )


class TelemetryConfig(_Section):
    service_namespace: str = "beamflow"
    health_host: str = "127.0.0.1"


class FlightCheck(_Section):
    """A small test scan sent through the beamline's whole pipeline on its real endpoints, then removed.

    The files go into ``folder`` under the watched endpoint; the watcher, the mover and the ledger treat them
    as any scan, the catalog, the analyzer and the archiver leave them alone.
    """

    every: Duration = Field(default=timedelta(hours=12), description="How often (a JetStream message schedule).")
    timeout: Duration = Field(
        default=timedelta(hours=1), description="Every verified copy must be there within this, or it fails."
    )
    folder: str = Field(default="beamflow-flight-check", pattern=r"^[A-Za-z0-9_-]+$")
    size: int = Field(default=1024 * 1024, gt=0, le=1024**3, description="Bytes per test file.")


class WatchConfig(_Section):
    endpoint: str
    mode: Literal["inotify", "poll"] = Field(
        default="inotify", description="'poll' for network mounts (NFS/SMB) where inotify sees nothing."
    )
    poll_interval: Duration = timedelta(seconds=2)
    stable_polls: int = Field(default=2, ge=1, description="Polls with unchanged size and mtime = finished.")
    settle: Duration = Field(
        default=timedelta(seconds=5),
        description="Reconcile announces a file untouched for this long even if no close event was seen.",
    )
    reconcile_interval: Duration = timedelta(minutes=5)
    ignore: list[str] = Field(default_factory=lambda: [".*", "*.tmp", "*.part", "*~"])


class ScanRule(_Section):
    """Files sharing a folder and a stem form one scan; the scan is complete when every suffix is present."""

    suffixes: list[str] = Field(min_length=1, description="e.g. ['.txt', '.edf'] for 7.3.3, ['.h5'] for 8.3.2")

    @field_validator("suffixes")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not s.startswith(".") or "/" in s]
        if bad:
            raise ValueError(f"suffixes must start with '.' and hold no '/': {bad}")
        if len(set(value)) != len(value):
            raise ValueError("suffixes must be distinct")
        return value


class Destination(_Section):
    endpoint: str
    source: str | None = Field(
        default=None,
        description="Copy from this endpoint (an earlier destination); default: the watched one.",
    )


class ExportControl(_Section):
    """Scans matching these globs (relative to the watched root) never leave the facility."""

    path_globs: list[str] = Field(
        default_factory=list, description="fnmatch globs on the scan path; '*' also matches '/' here."
    )

    def matches(self, scan_path: str) -> bool:
        return any(fnmatch(scan_path, glob) for glob in self.path_globs)


class BeamlineConfig(_Section):
    description: str = ""
    watch: WatchConfig
    scan: ScanRule
    destinations: list[Destination] = Field(default_factory=list)
    export_control: ExportControl = Field(default_factory=ExportControl)
    catalog: BeamlineCatalog | None = Field(default=None, description="Unset: this beamline is not catalogued.")
    archive: ArchivePolicy | None = Field(default=None, description="Unset: this beamline is not archived.")
    analysis: AnalysisPolicy | None = Field(default=None, description="Unset: nothing is run on this beamline's scans.")
    flight_check: FlightCheck | None = Field(default=None, description="Unset: no periodic test scan.")

    def is_flight_check(self, scan_path: str | None) -> bool:
        """Whether the scan is a flight check's test scan (catalog, analysis and archive leave those alone)."""
        return self.flight_check is not None and (scan_path or "").startswith(f"{self.flight_check.folder}/")


class BeamflowConfig(_Section):
    nats: NatsConfig = Field(default_factory=NatsConfig)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    catalog: CatalogConnection = Field(default_factory=CatalogConnection)
    state_dir: Path = Field(default=Path(".beamflow/state"), description="Local state: the watcher's spool.")
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    compute: dict[str, ComputeSiteConfig] = Field(default_factory=dict, description="Where analysis jobs run.")
    beamlines: dict[str, BeamlineConfig] = Field(default_factory=dict)

    @property
    def embedded_url_file(self) -> Path:
        """Where ``beamflow up`` writes its embedded server's URL, so operator commands find it (port 0)."""
        return self.state_dir / "nats.url"

    @property
    def local_catalog_dir(self) -> Path:
        """The local SciCat's database, URL file and generated password, when ``catalog.url`` is unset."""
        return self.state_dir / "scicat"

    def endpoint(self, name: str) -> EndpointConfig:
        return self.endpoints[name]

    def filesystem_root(self, name: str) -> Path:
        endpoint = self.endpoints[name]
        if not isinstance(endpoint, FilesystemEndpoint):
            raise TypeError(f"endpoint {name} is {endpoint.kind}, not a filesystem")
        return endpoint.root


def expected_destinations(config: BeamflowConfig, beamline: str, scan_path: str) -> set[str]:
    """Where a scan should end up under ``config``: every destination, minus what export control forbids."""
    settings = config.beamlines[beamline]
    restricted = settings.export_control.matches(scan_path)
    holds = {settings.watch.endpoint}
    wanted: set[str] = set()
    for dest in settings.destinations:
        if restricted and config.endpoints[dest.endpoint].leaves_facility:
            continue
        if (dest.source or settings.watch.endpoint) not in holds:
            continue
        holds.add(dest.endpoint)
        wanted.add(dest.endpoint)
    return wanted


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str) -> str:
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise ConfigError([f"the config uses ${{{name}}} but {name} is not set (or give a default: ${{{name}:-...}})"])

    return _VAR.sub(sub, value)


def _rebase_paths(config: BeamflowConfig, base: Path) -> BeamflowConfig:
    """Expand variables in path fields and anchor relative ones at the config file's folder."""

    def fix(path: Path) -> Path:
        expanded = Path(_expand(str(path))).expanduser()
        return expanded if expanded.is_absolute() else (base / expanded).resolve()

    endpoints = {
        name: ep.model_copy(update={"root": fix(ep.root)})
        if isinstance(ep, FilesystemEndpoint | TarArchiveEndpoint)
        else ep
        for name, ep in config.endpoints.items()
    }
    return config.model_copy(
        update={
            "endpoints": endpoints,
            "state_dir": fix(config.state_dir),
            "nats": config.nats.model_copy(
                update={
                    "data_dir": fix(config.nats.data_dir),
                    "credentials_file": fix(config.nats.credentials_file) if config.nats.credentials_file else None,
                    "tls": config.nats.tls.model_copy(
                        update={
                            name: fix(value)
                            for name in ("ca_file", "cert_file", "key_file")
                            if (value := getattr(config.nats.tls, name)) is not None
                        }
                    )
                    if config.nats.tls
                    else None,
                }
            ),
        }
    )


def cross_check(config: BeamflowConfig) -> list[str]:
    """Problems no single field can see: names that must be tokens, references that must exist."""
    problems: list[str] = []
    for name, endpoint in config.endpoints.items():
        if not subjects.is_token(name):
            problems.append(f"endpoints.{name}: the name must be letters, digits, '-' or '_'")
        rule = endpoint.retention
        if rule is not None:
            if rule.check_endpoint not in config.endpoints:
                problems.append(
                    f"endpoints.{name}.retention.check_endpoint: no endpoint named {rule.check_endpoint!r} is defined"
                )
            elif rule.check_endpoint == name:
                problems.append(
                    f"endpoints.{name}.retention.check_endpoint: a copy on the same endpoint cannot make deleting "
                    "it safe; name the endpoint that holds the other copy"
                )
    for bl_name, bl in config.beamlines.items():
        where = f"beamlines.{bl_name}"
        if not subjects.is_token(bl_name):
            problems.append(f"{where}: the name must be letters, digits, '-' or '_' (it is a subject token)")
        if bl.watch.endpoint not in config.endpoints:
            problems.append(f"{where}.watch.endpoint: no endpoint named {bl.watch.endpoint!r} is defined")
        elif not isinstance(config.endpoints[bl.watch.endpoint], FilesystemEndpoint):
            problems.append(f"{where}.watch.endpoint: the watcher needs a filesystem endpoint")
        reachable = {bl.watch.endpoint}
        for i, dest in enumerate(bl.destinations):
            dwhere = f"{where}.destinations.{i}"
            if dest.endpoint not in config.endpoints:
                problems.append(f"{dwhere}.endpoint: no endpoint named {dest.endpoint!r} is defined")
            source = dest.source or bl.watch.endpoint
            if dest.source is not None and dest.source not in config.endpoints:
                problems.append(f"{dwhere}.source: no endpoint named {dest.source!r} is defined")
            elif source not in reachable:
                problems.append(
                    f"{dwhere}.source: {source!r} holds no copy yet at this step; "
                    "a source must be the watched endpoint or an earlier destination"
                )
            if source == dest.endpoint:
                problems.append(f"{dwhere}: source and destination are both {source!r}")
            elif source in config.endpoints and dest.endpoint in config.endpoints:
                problems += _transport_problem(config, dwhere, source, dest.endpoint)
            if dest.endpoint in reachable:
                problems.append(f"{dwhere}.endpoint: {dest.endpoint!r} already holds the scan at this step")
            reachable.add(dest.endpoint)
        if bl.catalog is not None:
            problems += _check_catalog(config, f"{where}.catalog", bl, reachable)
        if bl.archive is not None:
            problems += _check_archive(config, f"{where}.archive", bl.archive, reachable)
        if bl.analysis is not None:
            copied_to = {d.endpoint for d in bl.destinations}
            problems += _check_analysis(config, f"{where}.analysis", bl.analysis, reachable, copied_to)
    for name, site in config.compute.items():
        scratch = config.endpoints.get(site.scratch)
        if scratch is None:
            problems.append(f"compute.{name}.scratch: no endpoint named {site.scratch!r} is defined")
        elif not isinstance(scratch, FilesystemEndpoint | GlobusEndpoint):
            problems.append(f"compute.{name}.scratch: {site.scratch!r} is a {scratch.kind} endpoint; jobs need files")
    for name, endpoint in config.endpoints.items():
        if isinstance(endpoint, TarArchiveEndpoint | HpssEndpoint) and endpoint.retention is not None:
            problems.append(f"endpoints.{name}.retention: bundles in an archive are never pruned; remove it")
        if isinstance(endpoint, TarArchiveEndpoint | HpssEndpoint):
            uses = [
                f"beamlines.{b}"
                for b, bl in config.beamlines.items()
                if bl.watch.endpoint == name or any(d.endpoint == name for d in bl.destinations)
            ]
            if uses:
                problems.append(
                    f"endpoints.{name}: an archive is written by the archiver only; {', '.join(uses)} "
                    "watches or copies to it"
                )
    return problems


def _transport_problem(config: BeamflowConfig, where: str, source: str, destination: str) -> list[str]:
    """Why no transfer controller can copy ``source`` -> ``destination`` (empty when one can)."""
    a, b = config.endpoints[source], config.endpoints[destination]
    if isinstance(a, FilesystemEndpoint) and isinstance(b, FilesystemEndpoint):
        return []
    if isinstance(a, GlobusEndpoint) or isinstance(b, GlobusEndpoint):
        unmounted = [
            name for name, e in ((source, a), (destination, b)) if isinstance(e, FilesystemEndpoint) and not e.globus
        ]
        others = [
            name
            for name, e in ((source, a), (destination, b))
            if not isinstance(e, FilesystemEndpoint | GlobusEndpoint)
        ]
        if others:
            return [f"{where}: Globus cannot copy to or from {others[0]!r} ({config.endpoints[others[0]].kind})"]
        return [
            f"{where}: {name!r} is a folder that Globus must reach: give it `globus: {{collection_id, path}}` "
            "(the folder as its Globus collection sees it)"
            for name in unmounted
        ]
    return [f"{where}: nothing copies {a.kind} -> {b.kind} ({source!r} -> {destination!r})"]


def _check_analysis(
    config: BeamflowConfig, where: str, policy: AnalysisPolicy, reachable: set[str], destinations: set[str]
) -> list[str]:
    problems: list[str] = []
    if policy.site not in config.compute:
        problems.append(f"{where}.site: no compute site named {policy.site!r} (define it under `compute:`)")
    if policy.source not in reachable:
        problems.append(f"{where}.source: {policy.source!r} never holds this beamline's scans")
    elif policy.source not in destinations:
        problems.append(
            f"{where}.source: {policy.source!r} is watched, not copied to; analysis starts on a verified copy, so "
            "name one of the beamline's destinations"
        )
    site = config.compute.get(policy.site)
    if site is not None and site.scratch in config.endpoints and policy.source in config.endpoints:
        problems += _transport_problem(config, f"{where} (staging)", policy.source, site.scratch)
        if policy.output_endpoint in config.endpoints:
            problems += _transport_problem(config, f"{where} (outputs)", site.scratch, policy.output_endpoint)
    output = config.endpoints.get(policy.output_endpoint)
    if output is None:
        problems.append(f"{where}.output_endpoint: no endpoint named {policy.output_endpoint!r} is defined")
    elif not isinstance(output, FilesystemEndpoint | GlobusEndpoint):
        problems.append(f"{where}.output_endpoint: {policy.output_endpoint!r} is a {output.kind} endpoint, not storage")
    return problems


def _check_archive(config: BeamflowConfig, where: str, policy: ArchivePolicy, reachable: set[str]) -> list[str]:
    problems: list[str] = []
    target = config.endpoints.get(policy.endpoint)
    if target is None:
        problems.append(f"{where}.endpoint: no endpoint named {policy.endpoint!r} is defined")
    elif not isinstance(target, TarArchiveEndpoint | HpssEndpoint):
        problems.append(f"{where}.endpoint: {policy.endpoint!r} is a {target.kind} endpoint, not an archive")
    source = config.endpoints.get(policy.source)
    if source is None:
        problems.append(f"{where}.source: no endpoint named {policy.source!r} is defined")
    elif isinstance(target, HpssEndpoint) and not isinstance(source, FilesystemEndpoint) and not target.source_root:
        problems.append(
            f"{where}.source: {policy.source!r} is not a filesystem here, so endpoints.{policy.endpoint}.source_root "
            "must say where its copies are at the site"
        )
    elif not isinstance(target, HpssEndpoint) and not isinstance(source, FilesystemEndpoint):
        problems.append(f"{where}.source: the archiver reads from a filesystem endpoint; {policy.source!r} is not")
    elif policy.source not in reachable:
        problems.append(f"{where}.source: {policy.source!r} never holds this beamline's scans")
    return problems


def _check_catalog(config: BeamflowConfig, where: str, bl: BeamlineConfig, reachable: set[str]) -> list[str]:
    catalog = bl.catalog
    assert catalog is not None
    problems: list[str] = []
    if catalog.destination not in {d.endpoint for d in bl.destinations}:
        problems.append(f"{where}.destination: {catalog.destination!r} is not one of this beamline's destinations")
    read_from = catalog.read_from or catalog.destination
    if read_from not in config.endpoints:
        problems.append(f"{where}.read_from: no endpoint named {read_from!r} is defined")
    elif not isinstance(config.endpoints[read_from], FilesystemEndpoint):
        problems.append(
            f"{where}.read_from: the ingestor reads files from a filesystem endpoint; {read_from!r} is not one "
            "(name the facility copy the scan was sent from)"
        )
    elif read_from not in reachable:
        problems.append(f"{where}.read_from: {read_from!r} never holds this beamline's scans")
    return problems


def parse_config(raw: Any, base: Path) -> BeamflowConfig:
    try:
        config = BeamflowConfig.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise ConfigError(
            [
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                for e in exc.errors(include_url=False)
            ]
        ) from exc
    problems = cross_check(config)
    if problems:
        raise ConfigError(problems)
    return _rebase_paths(config, base)


def load_config(path: Path | str) -> BeamflowConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file ({exc.strerror})"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from exc
    return parse_config(raw, path.resolve().parent)


def environment_problems(config: BeamflowConfig) -> list[str]:
    """What stops this config from running on this machine: missing roots, unset secrets."""
    from beamflow.common.endpoints import GlobusEndpoint

    problems: list[str] = []
    for name, ep in config.endpoints.items():
        if isinstance(ep, FilesystemEndpoint):
            if not ep.root.is_dir():
                problems.append(f"endpoints.{name}.root: {ep.root} is not a folder on this machine")
            elif not os.access(ep.root, os.R_OK | os.X_OK):
                problems.append(f"endpoints.{name}.root: {ep.root} is not readable by this user")
        elif isinstance(ep, TarArchiveEndpoint):
            if not ep.root.is_dir() or not os.access(ep.root, os.W_OK | os.X_OK):
                problems.append(f"endpoints.{name}.root: {ep.root} is not a folder this user can write bundles into")
        elif isinstance(ep, HpssEndpoint):
            for field in ("client_id", "private_key"):
                ref = getattr(ep, field)
                if not ref.is_set():
                    problems.append(f"endpoints.{name}.{field}: {ref.describe()} is not set")
        elif isinstance(ep, GlobusEndpoint):
            for field in ("client_id", "client_secret"):
                ref = getattr(ep, field)
                if not ref.is_set():
                    problems.append(f"endpoints.{name}.{field}: {ref.describe()} is not set")
    catalogued = any(bl.catalog is not None for bl in config.beamlines.values())
    if catalogued and config.catalog.url and not config.catalog.password.is_set():
        problems.append(f"catalog.password: {config.catalog.password.describe()} is not set")
    return problems
