"""What every benchmark here shares: its command line, a scratch folder, where the figures go, and a small
verified copy to start a downstream service's work from.

Benchmarks run as ``python bench/<name>.py`` (this folder is then on ``sys.path``), print a short report
whose last lines are the figures, and write the same figures as JSON to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SCRATCH = REPO / ".beamflow" / "bench"


def parser(name: str, doc: str, epilog: str) -> argparse.ArgumentParser:
    """The benchmark's parser with the options every benchmark has (--output, --strict)."""
    parsed = argparse.ArgumentParser(
        prog=f"bench/{name}.py",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
    )
    parsed.add_argument("--output", type=Path, default=RESULTS / f"{name}.json", help="JSON results file")
    parsed.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parsed


def add_workdir(parsed: argparse.ArgumentParser) -> None:
    """``--workdir``: where a benchmark's temporary folder goes (the filesystem being measured)."""
    parsed.add_argument(
        "--workdir",
        type=Path,
        default=SCRATCH,
        help="where the temporary folder goes; must be on the filesystem to measure",
    )


@contextlib.contextmanager
def scratch(prefix: str, parent: Path = SCRATCH, keep: bool = False) -> Iterator[Path]:
    """A fresh folder for one run, removed afterwards (even on error) unless ``keep``."""
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))
    try:
        yield base
    finally:
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {path}")


def verified_copy(root: Path, rel: str, size: int, number: int) -> Any:
    """Write ``size`` random bytes at ``root/rel`` (the ``data`` endpoint) and return the ``scan.moved`` that a
    verified copy there announces, as the mover would publish it."""
    import os

    from beamflow.common.checksums import file_checksum
    from beamflow.common.events import FileCopy, ScanMoved

    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    digest, size = file_checksum(path)
    return ScanMoved(
        scan_id=f"bl832-bench-{number:03d}",
        beamline="bl832",
        source_endpoint="source",
        destination_endpoint="data",
        step=1,
        files=[FileCopy(path=rel, size=size, checksum=digest, algorithm="xxh3-128")],
        bytes=size,
        seconds=0.0,
        copied=True,
        scan_path=rel.rsplit(".", 1)[0],
    )
