"""Analysis job overhead benchmark: scan.moved to scan.analyzed for one small scan, minus the job's own run time.

What it measures
    For each of N small scans (one 64 KiB file each, one after the other): the time from publishing the
    ``scan.moved`` the analyzer consumes to seeing its ``scan.analyzed``. In between the analyzer stages the
    file into the site's scratch (a verified copy), renders the job script, submits it, follows it to its end,
    reads the job's result line, brings the output back (a verified copy), removes the staged input and
    publishes. The job's own run time (as the site reports it: Slurm's RunTime, whole seconds; the process's
    wall time on the local site) is subtracted: the rest is our overhead, waiting for the scheduler included.

How
    ``--site slurm``: a real single-node Slurm (``beamflow.sfapi_local.slurm.LocalSlurm``, needs root; installs
    slurm-wlm with apt if missing), jobs submitted with ``sbatch`` and followed with ``scontrol`` every
    ``--poll`` seconds. ``--site local``: the embedded default, a process per job. The job runs a tiny Python
    analysis (sum of its inputs' sizes), so what is measured is the orchestration, not an analysis.

Run: ``.venv/bin/python bench/analysis.py [--site slurm|local]``; figures to stdout and
``bench/results/analysis_<site>.json``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import timedelta
from pathlib import Path

from beamflow.analyzer.service import build as build_analyzer
from beamflow.common.compute_config import AnalysisPolicy, ComputeSiteConfig, LocalCompute, SlurmCompute
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.events import ScanAnalyzed
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness as service_harness
from beamflow.common.testing import test_config
from beamflow.sfapi_local.slurm import LocalSlurm, ensure_slurm_installed

import harness

SIZES = """import json, os, sys
args = sys.argv[1:]
out = args[args.index("--output") + 1]
inputs = [a for i, a in enumerate(args) if a != "--output" and (i == 0 or args[i - 1] != "--output")]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "sizes.txt"), "w") as f:
    f.write(str(sum(os.path.getsize(p) for p in inputs)))
print(json.dumps({"analysis": "sizes", "outputs": ["sizes.txt"]}))
"""


async def run(base: Path, site_kind: str, scans: int, poll: float) -> dict[str, object]:
    slurm: LocalSlurm | None = None
    site: ComputeSiteConfig
    if site_kind == "slurm":
        ensure_slurm_installed()
        slurm = LocalSlurm(base / "slurm").start()
        site = SlurmCompute(scratch="scratch", slurm_conf=str(slurm.conf_path), poll_interval=timedelta(seconds=poll))
    else:
        site = LocalCompute(scratch="scratch", poll_interval=timedelta(seconds=poll))
    server = EmbeddedNats(base / "nats", port=0)
    await server.start()
    try:
        script = base / "sizes.py"
        script.write_text(SIZES)
        config = test_config(base, ack_wait=timedelta(seconds=60))
        extra = {name: FilesystemEndpoint(root=base / name) for name in ("scratch", "results")}
        policy = AnalysisPolicy(
            name="sizes", site="bench", source="data", output_endpoint="results", command=["{python}", str(script)]
        )
        beamline = config.beamlines["bl832"].model_copy(update={"analysis": policy})
        config = config.model_copy(
            update={
                "endpoints": {**config.endpoints, **extra},
                "compute": {"bench": site},
                "beamlines": {"bl832": beamline},
            }
        )
        totals: list[float] = []
        ours: list[float] = []
        job_runs: list[float] = []
        async with service_harness(config, server.url, build_analyzer(config)) as (bus, events):
            for i in range(scans):
                rel = f"P-1/scan_{i:03d}.h5"
                moved = harness.verified_copy(base / "data", rel, 64 * 1024, i)
                started = time.monotonic()
                await bus.publish(moved)
                await events.wait_for(lambda c, n=i + 1: len(c.of(ScanAnalyzed)) + len(c.failed) >= n, timeout=300)
                total = time.monotonic() - started
                if events.failed:
                    raise SystemExit(f"the analysis failed: {events.failed[0].reason}")
                job = events.of(ScanAnalyzed)[-1].runtime_seconds
                totals.append(total)
                job_runs.append(job)
                ours.append(total - job)
                print(f"  scan {i}: {total:.3f} s, the job ran {job:.3f} s")
    finally:
        server.stop()
        if slurm is not None:
            slurm.stop()
    return {
        "site": site_kind,
        "scans": scans,
        "poll_s": poll,
        "moved_to_analyzed_median_s": statistics.median(totals),
        "overhead_median_s": statistics.median(ours),
        "totals_s": totals,
        "job_run_s": job_runs,
    }


def main() -> int:
    parser = harness.parser("analysis", __doc__ or "", "Figures: moved -> analyzed, and our overhead.")
    parser.add_argument("--site", choices=("slurm", "local"), default="slurm")
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between job polls (default 0.5)")
    args = parser.parse_args()
    with harness.scratch(f"analysis-{args.site}") as base:
        results = asyncio.run(run(base, args.site, args.scans, args.poll))
    harness.save(results, args.output.with_name(f"analysis_{args.site}.json"))
    print(
        f"\nanalysis on the {args.site} site, one small scan: scan.moved -> scan.analyzed median "
        f"{results['moved_to_analyzed_median_s']:.2f} s; our overhead (all but the job's run time) median "
        f"{results['overhead_median_s']:.2f} s, polling every {args.poll:g} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
