"""Copy benchmark: the mover's copy+verify against ``cp`` of the same files, in the same run.

What it measures
    Throughput (MB/s) of ``beamflow.common.transfer_fs.copy_file`` -- the exact function the mover runs
    for a filesystem destination -- against GNU ``cp --preserve=timestamps``, for two datasets: one 1 GiB
    file and 20 files of 50 MiB. Target: beamflow reaches at least 0.8 of plain ``cp``'s throughput.

How
    Source files are made of os.urandom 1 MiB blocks (every block different, so nothing compresses or
    dedups) and synced to disk before timing starts; they stay in the page cache, so every method reads
    them from memory. Each round times three methods into a fresh destination folder on the same
    filesystem, in an order that rotates from round to round:

    - ``cp``: one ``cp --preserve=timestamps <files> <folder>/`` process;
    - ``cp+fsync``: the same, then fsync of every copied file and of the folder (still timed);
    - ``beamflow``: ``copy_file(source_root, dest_root, relpath)`` per file, one after another.

    beamflow's copy does more than ``cp``: it hashes while copying (xxh3-128), fsyncs the copy, re-reads it
    to verify the checksum, renames it into place and fsyncs the folder. ``cp`` alone leaves its data in
    the page cache, so the ratio against ``cp+fsync`` is reported too, for transparency. Between runs
    (untimed) everything is synced and the destination deleted, so no run pays for another's write-back.
    One untimed warm-up copy precedes the rounds. The median of the rounds is reported.

Run: ``.venv/bin/python bench/copy_speed.py`` (or ``make bench-copy``). Figures go to stdout and to
``bench/results/copy.json``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beamflow.common.transfer_fs import copy_file

import harness

MIB = 1024 * 1024
TARGET_RATIO = 0.8
METHODS = ("cp", "cp+fsync", "beamflow")


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        left = size
        while left:
            block = os.urandom(min(MIB, left))
            fh.write(block)
            left -= len(block)


def fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run_cp(sources: list[Path], dest_dir: Path) -> None:
    subprocess.run(["cp", "--preserve=timestamps", *map(str, sources), f"{dest_dir}/"], check=True)


def timed(method: str, source_root: Path, relpaths: list[str], dest_root: Path) -> float:
    """Seconds one method takes to copy ``relpaths`` from ``source_root`` into ``dest_root``."""
    sources = [source_root / rel for rel in relpaths]
    dest_dir = (dest_root / relpaths[0]).parent
    if method != "beamflow":
        dest_dir.mkdir(parents=True)  # cp needs the folder; copy_file makes its own (not timed either way)
    started = time.perf_counter()
    if method == "beamflow":
        for rel in relpaths:
            copy_file(source_root, dest_root, rel)
    else:
        run_cp(sources, dest_dir)
        if method == "cp+fsync":
            for rel in relpaths:
                fsync_path(dest_root / rel)
            fsync_path(dest_dir, directory=True)
    seconds = time.perf_counter() - started
    for src, rel in zip(sources, relpaths, strict=True):
        if (dest_root / rel).stat().st_size != src.stat().st_size:
            raise RuntimeError(f"{method}: {rel} has the wrong size at the destination")
    return seconds


def quiesce(dest_root: Path) -> None:
    """Not timed: flush whatever a run left dirty, then delete its copies."""
    os.sync()
    shutil.rmtree(dest_root, ignore_errors=True)
    os.sync()


def bench_dataset(
    name: str, files: list[tuple[str, int]], base: Path, rounds: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    source_root = base / "source"
    relpaths = [f"{name}/{fname}" for fname, _ in files]
    total = sum(size for _, size in files)
    progress(f"{name}: creating {len(files)} file(s), {total / MIB:.0f} MiB of random data ...")
    for (_, size), rel in zip(files, relpaths, strict=True):
        make_file(source_root / rel, size)
    os.sync()
    # Untimed warm-up: the first writes after creating (or deleting) a gigabyte are the noisiest here.
    warmup = base / f"warmup-{name}"
    timed("cp+fsync", source_root, relpaths, warmup)
    quiesce(warmup)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for r in range(rounds):
        order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
        for method in order:
            dest_root = base / f"dest-{name}-{method.replace('+', '-')}-{r}"
            seconds = timed(method, source_root, relpaths, dest_root)
            times[method].append(seconds)
            progress(f"  round {r + 1}: {method:<9} {seconds:6.2f} s  {total / seconds / 1e6:7.1f} MB/s")
            quiesce(dest_root)
    shutil.rmtree(source_root / name)
    median = {m: statistics.median(t) for m, t in times.items()}
    mbps = {m: total / s / 1e6 for m, s in median.items()}
    return {
        "files": len(files),
        "bytes": total,
        "rounds": rounds,
        "seconds": {m: [round(t, 3) for t in ts] for m, ts in times.items()},
        "median_seconds": {m: round(s, 3) for m, s in median.items()},
        "best_mb_per_s": {m: round(total / min(t) / 1e6, 1) for m, t in times.items()},
        "mb_per_s": {m: round(v, 1) for m, v in mbps.items()},
        "ratio_vs_cp": round(mbps["beamflow"] / mbps["cp"], 3),
        "ratio_vs_cp_fsync": round(mbps["beamflow"] / mbps["cp+fsync"], 3),
        "pass": mbps["beamflow"] / mbps["cp"] >= TARGET_RATIO,
    }


def main() -> int:
    parser = harness.parser(
        "copy",
        __doc__ or "",
        epilog="Target: beamflow copy+verify >= 0.8 x cp throughput.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per dataset, method order rotating (default 3)")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the single large file (default 1024)")
    parser.add_argument("--count", type=int, default=20, help="number of medium files (default 20)")
    parser.add_argument("--each-mib", type=int, default=50, help="size of each medium file (default 50)")
    harness.add_workdir(parser)
    args = parser.parse_args()

    datasets = {
        f"1x{args.big_mib}MiB": [("big.bin", args.big_mib * MIB)],
        f"{args.count}x{args.each_mib}MiB": [(f"part_{i:02d}.bin", args.each_mib * MIB) for i in range(args.count)],
    }
    results: dict[str, Any] = {"benchmark": "copy", "target_ratio_vs_cp": TARGET_RATIO, "datasets": {}}
    with harness.scratch("copy", parent=args.workdir) as base:
        for name, files in datasets.items():
            results["datasets"][name] = bench_dataset(
                name, files, base, args.rounds, lambda line: print(line, flush=True)
            )
    harness.save(results, args.output)
    print()
    print(
        f"copy: median of {args.rounds} rounds, MB = 10^6 bytes; source in page cache; target beamflow/cp >= "
        f"{TARGET_RATIO}"
    )
    for name, d in results["datasets"].items():
        best = d["best_mb_per_s"]
        print(
            f"  {name} best round: cp {best['cp']:.0f}, cp+fsync {best['cp+fsync']:.0f}, "
            f"beamflow {best['beamflow']:.0f} MB/s"
        )
    for name, d in results["datasets"].items():
        m = d["mb_per_s"]
        print(
            f"{name}: cp {m['cp']:.0f} MB/s, cp+fsync {m['cp+fsync']:.0f} MB/s, beamflow {m['beamflow']:.0f} MB/s; "
            f"beamflow/cp {d['ratio_vs_cp']:.2f} {'PASS' if d['pass'] else 'MISS'}, "
            f"beamflow/(cp+fsync) {d['ratio_vs_cp_fsync']:.2f}"
        )
    ok = all(d["pass"] for d in results["datasets"].values())
    return 1 if args.strict and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
