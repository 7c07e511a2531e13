"""NERSC archive path benchmark: scan.moved to scan.archived for one small scan through HPSS jobs, and our share.

What it measures
    For each of N small scans (one 1 MiB file each, one after the other): the time from the ``scan.moved``
    the archiver consumes to the ``scan.archived`` it publishes (both as stored by the server), when the
    archive is NERSC HPSS. In between, the archiver plans the bundle, submits a "state" job and a "write"
    job through the unmodified sfapi-client and follows each to the end. The Slurm jobs' own run times
    (start to end, from the controller) are subtracted: the rest is our overhead (planning, the API's
    token, submit and polling round trips, waiting for Slurm to schedule, publishing).

How
    A real single-node Slurm with the SFAPI stand-in and htar/hsi stand-ins (``beamflow.sfapi_local``,
    needs root; installs slurm-wlm with apt if missing), an embedded nats-server, and the archiver and
    ledger services in this process, exactly as the integration tests run them. The job poll interval is
    ``--poll`` seconds (sfapi-client's default is 10 s; production keeps 10 s, which then dominates). The
    time runs from publishing ``scan.moved`` to seeing ``scan.archived`` in this process.

Run: ``.venv/bin/python bench/archive_nersc.py`` (root); figures to stdout and ``bench/results/archive_nersc.json``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import timedelta
from pathlib import Path

from beamflow.archiver.service import build as build_archiver
from beamflow.common.archive_config import ArchivePolicy
from beamflow.common.endpoints import HpssEndpoint
from beamflow.common.events import ScanArchived
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.testing import harness as service_harness
from beamflow.common.testing import test_config
from beamflow.ledger.service import build as build_ledger
from beamflow.sfapi_local.slurm import ensure_slurm_installed
from beamflow.sfapi_local.testing import LocalNersc

import harness


async def run(base: Path, scans: int, poll: float) -> dict[str, object]:
    ensure_slurm_installed()
    nersc = LocalNersc(base / "nersc")
    nersc.start()
    server = EmbeddedNats(base / "nats", port=0)
    await server.start()
    try:
        os.environ["BENCH_SFAPI_CLIENT_ID"] = nersc.credentials.client_id
        os.environ["BENCH_SFAPI_KEY"] = nersc.credentials.secret
        config = test_config(base, ack_wait=timedelta(seconds=120))
        hpss = HpssEndpoint(
            root="/home/a/alsdev/bench",
            api_base_url=nersc.api_base_url,
            token_url=nersc.token_url,
            client_id=SecretRef(env="BENCH_SFAPI_CLIENT_ID"),
            private_key=SecretRef(env="BENCH_SFAPI_KEY"),
            poll_interval=timedelta(seconds=poll),
            listing_dir=str(nersc.scratch / "listings"),  # as config/bl832.yaml: the archive is listed first
        )
        policy = ArchivePolicy(endpoint="hpss", source="data", when="per_scan")
        beamline = config.beamlines["bl832"].model_copy(update={"archive": policy})
        config = config.model_copy(
            update={"endpoints": {**config.endpoints, "hpss": hpss}, "beamlines": {"bl832": beamline}}
        )
        totals: list[float] = []
        ours: list[float] = []
        job_runs: list[float] = []
        services = (build_ledger(config), build_archiver(config))
        async with service_harness(config, server.url, *services) as (bus, events):
            for i in range(scans):
                rel = f"ALS-11123/2026/scan_{i:03d}.h5"
                moved = harness.verified_copy(base / "data", rel, 1024 * 1024, i)
                jobs_before = set(nersc.slurm.jobs())
                started = time.monotonic()
                await bus.publish(moved)
                await events.wait_for(lambda c, n=i + 1: len(c.of(ScanArchived)) + len(c.failed) >= n, timeout=300)
                finished = time.monotonic()
                if events.failed:
                    raise SystemExit(f"archiving failed: {events.failed[0].reason}")
                jobs = [j for jid, j in nersc.slurm.jobs().items() if jid not in jobs_before]
                run_time = sum((j.end_time or 0) - (j.start_time or 0) for j in jobs)
                totals.append(finished - started)
                job_runs.append(run_time)
                ours.append(finished - started - run_time)
                print(f"  scan {i}: {finished - started:.2f} s, {len(jobs)} job(s) ran {run_time:.2f} s")
    finally:
        server.stop()
        nersc.stop()
    return {
        "scans": scans,
        "poll_s": poll,
        "moved_to_archived_median_s": statistics.median(totals),
        "overhead_median_s": statistics.median(ours),
        "totals_s": totals,
        "job_run_s": job_runs,  # Slurm's start/end times have whole-second resolution
    }


def main() -> int:
    parser = harness.parser("archive_nersc", __doc__ or "", "Figures: moved -> archived, and our overhead.")
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between job polls (default 1)")
    args = parser.parse_args()
    with harness.scratch("archive-nersc") as base:
        results = asyncio.run(run(base, args.scans, args.poll))
    harness.save(results, args.output)
    print(
        "\nNERSC path, one small scan: scan.moved -> scan.archived median "
        f"{results['moved_to_archived_median_s']:.2f} s; "
        f"our overhead (all but the jobs' run time) median {results['overhead_median_s']:.2f} s, polling every "
        f"{args.poll:g} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
