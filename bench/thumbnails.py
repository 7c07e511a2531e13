"""Thumbnail benchmark: the time to make a catalogue thumbnail from a full-size detector frame.

What it measures
    (a) ``thumbnail_png`` on a 2048 x 2048 uint16 SAXS frame (synthetic pattern with Poisson noise, as the
        7.3.3 test data): block-average to 512 x 512, percentiles, log scale, PNG encoding;
    (b) an 8.3.2 projection from HDF5: open a DX file written by ``write_scan_832`` with full-size
        projections (2160 x 2560 uint16, ``--angles`` of them), read ``/exchange/data[0]``, make the
        thumbnail as the extractor does (0.1..99.9 percentile); also the read and the thumbnail alone;
    (c) for context, the whole extractors on those files: ``extract_733`` on a 2048 x 2048 scan (``.txt``
        + ``.edf``) and ``extract_832`` on the DX file (parameters, series, thumbnail).

How
    Each figure is the median (and min) of ``--runs`` timed runs after one warm-up run. The files are
    written first into a scratch folder under ``.beamflow/bench`` and read back right away, so they come
    from the page cache: the figures are decode + compute, not disk (a cold read of one 11 MB projection
    adds its disk time on top).

Run: ``.venv/bin/python bench/thumbnails.py`` (``--runs``, ``--angles``). Figures go to stdout and to
``bench/results/thumbnails.json``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from beamflow.common.simulate import saxs_pattern, write_scan_733, write_scan_832
from beamflow.ingestor.extractors import extract_733, extract_832, thumbnail_png
from beamflow.ingestor.extractors.tomo832 import THUMBNAIL_PERCENTILES

import harness

SAXS_SHAPE = (2048, 2048)
TOMO_SHAPE = (2160, 2560)


def timed(fn: Callable[[], object], runs: int) -> dict[str, float]:
    fn()  # warm-up: imports, allocator, page cache
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {"median": round(statistics.median(samples), 2), "min": round(min(samples), 2)}


def main() -> int:
    parser = harness.parser("thumbnails", __doc__ or "", "Figures: median and min milliseconds per thumbnail.")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per figure (default 15)")
    parser.add_argument("--angles", type=int, default=2, help="projections in the 8.3.2 file (default 2)")
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    frame = rng.poisson(saxs_pattern(SAXS_SHAPE, rng)).astype(np.uint16)
    saxs_ms = timed(lambda: thumbnail_png(frame), args.runs)

    with harness.scratch("thumbnails") as base:
        started = time.perf_counter()
        h5 = write_scan_832(
            base,
            "raw/20260314_193001_bench",
            rng,
            projections=args.angles,
            shape=TOMO_SHAPE,
            pi="Bench PI",
            proposal="ALS-00000",
        )
        write_s = time.perf_counter() - started
        size_mb = h5.stat().st_size / 1e6
        scan_files = write_scan_733(
            base, "733/bench_2m_00001", rng, shape=SAXS_SHAPE, proposal="ALS-00000", pi="Bench PI"
        )

        def read_projection() -> Any:
            with h5py.File(h5, "r") as f:
                return f["/exchange/data"][0]

        def read_and_thumbnail() -> bytes:
            return thumbnail_png(read_projection(), percentiles=THUMBNAIL_PERCENTILES)

        projection = read_projection()
        tomo_ms = timed(read_and_thumbnail, args.runs)
        read_ms = timed(read_projection, args.runs)
        tomo_thumb_ms = timed(lambda: thumbnail_png(projection, percentiles=THUMBNAIL_PERCENTILES), args.runs)
        extract_832_ms = timed(lambda: extract_832([h5]), args.runs)
        extract_733_ms = timed(lambda: extract_733(scan_files), args.runs)

    results: dict[str, Any] = {
        "benchmark": "thumbnails",
        "runs": args.runs,
        "saxs_2048x2048_uint16_thumbnail_ms": saxs_ms,
        "tomo_projection_shape": list(TOMO_SHAPE),
        "tomo_angles": args.angles,
        "tomo_file_mb": round(size_mb, 1),
        "tomo_read_first_projection_and_thumbnail_ms": tomo_ms,
        "tomo_read_first_projection_ms": read_ms,
        "tomo_thumbnail_only_ms": tomo_thumb_ms,
        "extract_733_2048x2048_ms": extract_733_ms,
        "extract_832_ms": extract_832_ms,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    harness.save(results, args.output)
    shape = f"{args.angles} x {TOMO_SHAPE[0]} x {TOMO_SHAPE[1]}"
    print(f"8.3.2 test file: {shape} uint16, {size_mb:.0f} MB, written in {write_s:.1f} s")
    print(f"7.3.3 frame 2048 x 2048 uint16 -> thumbnail:   median {saxs_ms['median']} ms (min {saxs_ms['min']})")
    print(
        f"8.3.2 projection 2160 x 2560 read + thumbnail:  median {tomo_ms['median']} ms (min {tomo_ms['min']}); "
        f"read {read_ms['median']} ms, thumbnail {tomo_thumb_ms['median']} ms"
    )
    print(f"whole extract_733 (2048 x 2048): median {extract_733_ms['median']} ms")
    print(f"whole extract_832 (above file):  median {extract_832_ms['median']} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
