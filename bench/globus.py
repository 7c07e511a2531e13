"""Globus controller benchmark: requests made per transfer task, and the time our polling adds.

What it measures
    For each of N scans (``--files`` files of ``--size`` bytes each) copied by ``GlobusTransfer`` from a
    beamline folder (a Globus collection) to a Globus endpoint, one after the other: the requests beamflow
    made to the Transfer API for the task (submission id, submit, the status polls; the token is fetched
    once per client and counted apart), the time from calling the controller to its return, and the
    task's own duration as Globus reports it (request_time to completion_time). The difference is the
    overhead: checksumming the source here, submitting, and the wait between the task's end and the poll
    that sees it.

How
    The local Globus stand-in (``beamflow.globus_local``) really copies the files; the unmodified globus-sdk
    talks to it over HTTP on loopback. Polling starts at 0.25 s and doubles up to the endpoint's
    ``poll_interval`` (``--poll``, default 10 s as in the shipped configs).

Run: ``.venv/bin/python bench/globus.py``; figures to stdout and ``bench/results/globus.json``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from beamflow.common.endpoints import FilesystemEndpoint, GlobusEndpoint, GlobusMount
from beamflow.common.secrets import SecretRef
from beamflow.common.transfer_globus import GlobusTransfer
from beamflow.globus_local.testing import LocalGlobus

import harness


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def run(base: Path, scans: int, files: int, size: int, poll: float) -> dict[str, object]:
    with LocalGlobus(base / "globus") as globus:
        os.environ.update(globus.env)
        os.environ["BENCH_GLOBUS_ID"] = globus.client_credentials.client_id
        os.environ["BENCH_GLOBUS_SECRET"] = globus.client_credentials.client_secret
        beamline, remote = str(uuid.uuid4()), str(uuid.uuid4())
        globus.add_collection(beamline, base / "beamline")
        globus.add_collection(remote, base / "remote")
        source = FilesystemEndpoint(
            root=base / "beamline/data", globus=GlobusMount(collection_id=uuid.UUID(beamline), path="/data")
        )
        destination = GlobusEndpoint(
            collection_id=uuid.UUID(remote),
            root="/cfs",
            client_id=SecretRef(env="BENCH_GLOBUS_ID"),
            client_secret=SecretRef(env="BENCH_GLOBUS_SECRET"),
            poll_interval=timedelta(seconds=poll),
        )
        requests: list[int] = []
        totals: list[float] = []
        overheads: list[float] = []
        for i in range(scans):
            paths = [f"P-1/scan_{i:03d}/frame_{j:03d}.h5" for j in range(files)]
            for relpath in paths:
                target = source.root / relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(os.urandom(size))
            controller = GlobusTransfer()
            before = len(globus.api.calls)
            started = time.monotonic()
            result = await controller.transfer("data", source, "nersc", destination, paths)
            total = time.monotonic() - started
            calls = list(globus.api.calls)[before:]
            task = globus.api.task(result.external_id or "")
            assert task is not None and task.completion_time is not None
            own = (task.completion_time - task.request_time).total_seconds()
            transfer_calls = [c for c in calls if c[1].startswith("/v0.10/")]
            requests.append(len(transfer_calls))
            totals.append(total)
            overheads.append(total - own)
            print(
                f"  scan {i}: {total:.3f} s, the task took {own:.3f} s, {len(transfer_calls)} Transfer requests "
                f"(+{len(calls) - len(transfer_calls)} token)"
            )
    return {
        "scans": scans,
        "files_per_scan": files,
        "bytes_per_file": size,
        "poll_interval_s": poll,
        "requests_per_task_median": statistics.median(requests),
        "requests_per_task": requests,
        "seconds_median": statistics.median(totals),
        "overhead_median_s": statistics.median(overheads),
    }


def main() -> int:
    parser = harness.parser("globus", __doc__ or "", "Figures: requests per task, and the overhead.")
    parser.add_argument("--scans", type=int, default=10)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--poll", type=float, default=10.0, help="the endpoint's poll_interval in seconds")
    args = parser.parse_args()
    with harness.scratch("globus") as base:
        results = asyncio.run(run(base, args.scans, args.files, args.size, args.poll))
    harness.save(results, args.output)
    print(
        f"\nGlobus: {results['requests_per_task_median']:g} Transfer requests per task (median), "
        f"{results['seconds_median']:.3f} s per scan of {args.files} x {args.size} bytes, overhead "
        f"{results['overhead_median_s']:.3f} s (poll_interval {args.poll:g} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
