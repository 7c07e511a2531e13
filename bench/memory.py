"""Memory benchmark: resident size of one idle beamflow service process.

What it measures
    VmRSS (resident set size) and VmHWM (its peak) of an idle ``mover`` and an idle ``watcher`` process,
    each started exactly as production runs them. Target: under 80 MB (80 x 10^6 bytes) each.

How
    An embedded nats-server is started, then for each service
    ``python -m beamflow.common.cli run <service> --config <yaml> --nats <url> --health-port <port>``
    as its own subprocess, with a ``test_config`` configuration (one beamline watching an empty folder,
    one filesystem destination). Once ``http://127.0.0.1:<port>/readyz`` answers 200 the process idles
    for 3 s, then ``/proc/<pid>/status`` is read. USS and PSS (memory the process does not share with
    others) are reported beside RSS for context; the target applies to RSS. The nats-server's RSS is shown
    for context only.

Run: ``.venv/bin/python bench/memory.py`` (or ``make bench-memory``). Figures go to stdout and to
``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.testing import config_to_yaml, test_config

import harness

TARGET_MB = 80.0
MB = 1_000_000
MIB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes, from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            number, unit = value.split()
            assert unit == "kB"
            found[key] = int(number) * 1024
    return found


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    config = test_config(base)
    yaml_path = config_to_yaml(config, base / "beamflow.yaml")
    server = EmbeddedNats(base / "nats")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: list[Any] = []
    try:
        asyncio.run(server.start())
        ports: dict[str, int] = {}
        for name in args.services:
            ports[name] = free_port()
            log = (base / f"{name}.log").open("wb")
            logs.append(log)
            procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "beamflow.common.cli",
                    "run",
                    name,
                    "--config",
                    str(yaml_path),
                    "--nats",
                    server.url,
                    "--health-port",
                    str(ports[name]),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        started = time.monotonic()
        pending = set(procs)
        while pending:
            for name in sorted(pending):
                if procs[name].poll() is not None:
                    tail = (base / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with {procs[name].returncode}:\n{tail}")
                if ready(ports[name]):
                    pending.discard(name)
                    print(f"{name}: ready after {time.monotonic() - started:.1f} s (pid {procs[name].pid})")
            if pending:
                if time.monotonic() - started > args.timeout:
                    raise RuntimeError(f"not ready after {args.timeout:.0f} s: {sorted(pending)}")
                time.sleep(0.1)  # polling another process's health endpoint
        print(f"idling {args.idle:.0f} s ...")
        time.sleep(args.idle)
        results: dict[str, Any] = {}
        for name, proc in procs.items():
            status = proc_status(proc.pid)
            entry: dict[str, Any] = {"pid": proc.pid, "rss_bytes": status["VmRSS"], "hwm_bytes": status["VmHWM"]}
            try:
                full = psutil.Process(proc.pid).memory_full_info()
                entry["uss_bytes"], entry["pss_bytes"] = full.uss, getattr(full, "pss", None)
            except psutil.Error:
                entry["uss_bytes"] = entry["pss_bytes"] = None
            entry["rss_mb"] = round(status["VmRSS"] / MB, 1)
            entry["rss_mib"] = round(status["VmRSS"] / MIB, 1)
            entry["hwm_mb"] = round(status["VmHWM"] / MB, 1)
            entry["hwm_mib"] = round(status["VmHWM"] / MIB, 1)
            entry["pass"] = status["VmRSS"] / MB < TARGET_MB
            results[name] = entry
        nats_rss = proc_status(server.pid)["VmRSS"] if server.pid is not None else None
        return {
            "benchmark": "memory",
            "target_mb": TARGET_MB,
            "idle_seconds": args.idle,
            "services": results,
            "nats_server_rss_bytes": nats_rss,
        }
    finally:
        for proc in procs.values():
            stop(proc)
        for log in logs:
            log.close()
        server.stop()


def main() -> int:
    parser = harness.parser(
        "memory",
        __doc__ or "",
        epilog="Target: RSS under 80 MB per idle service process.",
    )
    parser.add_argument(
        "--services", nargs="+", default=["mover", "watcher"], help="services to measure (default: mover watcher)"
    )
    parser.add_argument("--idle", type=float, default=3.0, help="seconds to idle once ready (default 3)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for readiness (default 30)")
    args = parser.parse_args()

    with harness.scratch("memory") as base:
        results = measure(args, base)
    harness.save(results, args.output)
    print()
    nats_rss = results["nats_server_rss_bytes"]
    print(
        f"memory: idle service processes after {args.idle:.0f} s; MB = 10^6 bytes, MiB = 2^20 bytes"
        + (f"; nats-server RSS {nats_rss / MB:.1f} MB (context)" if nats_rss else "")
    )
    for name, e in results["services"].items():
        extra = ""
        if e["uss_bytes"] is not None:
            extra = f"; USS {e['uss_bytes'] / MB:.1f} MB, PSS {e['pss_bytes'] / MB:.1f} MB"
        print(f"  {name}: peak (VmHWM) {e['hwm_mb']:.1f} MB / {e['hwm_mib']:.1f} MiB{extra}")
    for name, e in results["services"].items():
        print(
            f"{name}: RSS {e['rss_mb']:.1f} MB ({e['rss_mib']:.1f} MiB), target < {TARGET_MB:.0f} MB "
            f"{'PASS' if e['pass'] else 'MISS'}"
        )
    ok = all(e["pass"] for e in results["services"].values())
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
