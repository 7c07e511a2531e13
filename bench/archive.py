"""Archive benchmark: the local tar archive's write+verify against GNU ``tar -cf`` of the same files.

What it measures
    Throughput (MB/s) of ``LocalTarArchive.write`` -- the archiver's embedded backend, including its
    read-back verification, index and fsync -- against ``tar -cf`` of the same files, by default 5 GiB in
    1,000 files (5.12 MiB each). Target: beamflow reaches at least 0.8 of plain ``tar -cf``'s throughput.

How
    Source files are made of os.urandom 1 MiB blocks (nothing compresses or dedups), laid out as 100 scans
    of 10 files under one proposal, and synced to disk before timing starts; they stay in the page cache,
    so every method reads them from memory. Each round times three methods into a fresh folder on the same
    filesystem, in an order that rotates from round to round:

    - ``tar``: one ``tar -cf <out>.tar -C <source> -T <list>`` process (member names = the planned paths);
    - ``tar+fsync``: the same, then fsync of the tar and of its folder (still timed);
    - ``beamflow``: ``asyncio.run(LocalTarArchive(root).write(plan, source))`` for one htar plan holding
      every file: hash in the same pass, early write-back, fsync, listing read back and compared with the
      plan, index written and fsynced, both renamed into place, folder fsynced.

    ``tar`` alone leaves its output in the page cache, so the ratio against ``tar+fsync`` is reported too:
    it is the like-for-like cost of an archive that survives a power cut. After each beamflow round the
    bundle's ``state`` (listing and index against the plan) and ``state(deep=True)`` (every member re-read
    and re-hashed) are timed too, for information. Between runs (untimed) everything is synced and the
    output deleted, so no run pays for another's write-back. One untimed ``tar+fsync`` precedes the rounds.
    The median of the rounds is reported.

Run: ``.venv/bin/python bench/archive.py`` (``--total 1GiB --files 200 --rounds 1`` for a quick look).
Figures go to stdout and to ``bench/results/archive.json``. The default run needs about 11 GB of free disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beamflow.common.archive_model import BundlePlan, Cycle, MemberFile
from beamflow.common.archive_tar import LocalTarArchive

import harness
from copy_speed import fsync_path, make_file, quiesce

MIB = 1024 * 1024
TARGET_RATIO = 0.8
METHODS = ("tar", "tar+fsync", "beamflow")
PROPOSAL = "ALS-12345"
_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": MIB, "GIB": 1024 * MIB, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def size_arg(text: str) -> int:
    """'5GiB', '512MiB', '1000000' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 5GiB, 512MiB, 1000000)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def make_sources(source_root: Path, files: int, each: int, progress: Callable[[str], None]) -> list[MemberFile]:
    progress(f"creating {files} file(s) of {each / MIB:.1f} MiB ({files * each / MIB:.0f} MiB of random data) ...")
    members = []
    for i in range(files):
        rel = f"{PROPOSAL}/scan_{i // 10:05d}/frame_{i % 10:02d}.bin"
        path = source_root / rel
        make_file(path, each)
        st = path.stat()
        members.append(MemberFile(path=rel, size=st.st_size, mtime=st.st_mtime, scan_id=f"scan-{i // 10:05d}"))
    os.sync()
    return members


def timed(method: str, source_root: Path, plan: BundlePlan, out: Path, file_list: Path) -> float:
    """Seconds one method takes to archive the plan's members into the folder ``out``."""
    out.mkdir(parents=True)
    started = time.perf_counter()
    if method == "beamflow":
        state = asyncio.run(LocalTarArchive(out).write(plan, source_root))
        seconds = time.perf_counter() - started
        if state.state != "verified" or len(state.members) != len(plan.members):
            raise RuntimeError(f"beamflow: the bundle did not verify: {state.reason}")
        produced = out / plan.path
    else:
        produced = out / "tar.tar"
        subprocess.run(["tar", "-cf", str(produced), "-C", str(source_root), "-T", str(file_list)], check=True)
        if method == "tar+fsync":
            fsync_path(produced)
            fsync_path(out, directory=True)
        seconds = time.perf_counter() - started
    if produced.stat().st_size < plan.size:
        raise RuntimeError(f"{method}: {produced} is smaller than the data it should hold")
    return seconds


def timed_state(out: Path, plan: BundlePlan, deep: bool) -> float:
    started = time.perf_counter()
    state = asyncio.run(LocalTarArchive(out).state(plan, deep=deep))
    seconds = time.perf_counter() - started
    if state.state != "verified":
        raise RuntimeError(f"state(deep={deep}) did not verify the bundle just written: {state.reason}")
    return seconds


def main() -> int:
    parser = harness.parser(
        "archive",
        __doc__ or "",
        epilog="Target: LocalTarArchive.write (with verification) >= 0.8 x tar -cf throughput.",
    )
    parser.add_argument("--total", type=size_arg, default=5 * 1024 * MIB, help="bytes in all (default 5GiB)")
    parser.add_argument("--files", type=int, default=1000, help="number of files (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, method order rotating (default 3)")
    harness.add_workdir(parser)
    args = parser.parse_args()
    each = args.total // args.files
    total = each * args.files

    def progress(line: str) -> None:
        print(line, flush=True)

    times: dict[str, list[float]] = {m: [] for m in METHODS}
    state_times: dict[str, list[float]] = {"state": [], "state_deep": []}
    with harness.scratch("archive", parent=args.workdir) as base:
        source_root = base / "source"
        members = make_sources(source_root, args.files, each, progress)
        plan = BundlePlan(
            beamline="bl832",
            proposal=PROPOSAL,
            cycle=Cycle(year=2026, number=1),
            directory=f"bl832/raw/{PROPOSAL}",
            name=f"{PROPOSAL}_2026-1.tar",
            kind="htar",
            members=members,
        )
        file_list = base / "members.txt"
        file_list.write_text("".join(f"{m.path}\n" for m in members))
        warmup = base / "warmup"
        timed("tar+fsync", source_root, plan, warmup, file_list)
        quiesce(warmup)
        for r in range(args.rounds):
            order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
            for method in order:
                out = base / f"out-{method.replace('+', '-')}-{r}"
                seconds = timed(method, source_root, plan, out, file_list)
                times[method].append(seconds)
                line = f"  round {r + 1}: {method:<9} {seconds:6.2f} s  {total / seconds / 1e6:7.1f} MB/s"
                if method == "beamflow":
                    state_times["state"].append(timed_state(out, plan, deep=False))
                    state_times["state_deep"].append(timed_state(out, plan, deep=True))
                    line += f"  (state {state_times['state'][-1]:.3f} s, deep {state_times['state_deep'][-1]:.2f} s)"
                progress(line)
                quiesce(out)
        shutil.rmtree(source_root)

    median = {m: statistics.median(t) for m, t in times.items()}
    mbps = {m: total / s / 1e6 for m, s in median.items()}
    results: dict[str, Any] = {
        "benchmark": "archive",
        "target_ratio_vs_tar": TARGET_RATIO,
        "files": args.files,
        "bytes": total,
        "rounds": args.rounds,
        "seconds": {m: [round(t, 3) for t in ts] for m, ts in times.items()},
        "median_seconds": {m: round(s, 3) for m, s in median.items()},
        "best_mb_per_s": {m: round(total / min(t) / 1e6, 1) for m, t in times.items()},
        "mb_per_s": {m: round(v, 1) for m, v in mbps.items()},
        "ratio_vs_tar": round(mbps["beamflow"] / mbps["tar"], 3),
        "ratio_vs_tar_fsync": round(mbps["beamflow"] / mbps["tar+fsync"], 3),
        "pass": mbps["beamflow"] / mbps["tar"] >= TARGET_RATIO,
        "state_seconds": {k: [round(t, 3) for t in ts] for k, ts in state_times.items()},
    }
    harness.save(results, args.output)
    m = results["mb_per_s"]
    best = results["best_mb_per_s"]
    print()
    print(
        f"archive: {args.files} files, {total / MIB:.0f} MiB, median of {args.rounds} rounds, MB = 10^6 bytes; "
        f"source in page cache; target beamflow/tar >= {TARGET_RATIO}"
    )
    print(
        f"  best round: tar {best['tar']:.0f}, tar+fsync {best['tar+fsync']:.0f}, beamflow {best['beamflow']:.0f} MB/s"
    )
    print(
        f"  state (listing+index) median {statistics.median(state_times['state']):.3f} s, "
        f"deep (re-hash) {statistics.median(state_times['state_deep']):.2f} s"
    )
    print(
        f"tar {m['tar']:.0f} MB/s, tar+fsync {m['tar+fsync']:.0f} MB/s, beamflow {m['beamflow']:.0f} MB/s; "
        f"beamflow/tar {results['ratio_vs_tar']:.2f} {'PASS' if results['pass'] else 'MISS'}, "
        f"beamflow/(tar+fsync) {results['ratio_vs_tar_fsync']:.2f}"
    )
    return 1 if args.strict and not results["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
