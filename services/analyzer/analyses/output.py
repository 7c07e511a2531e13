"""What every analysis shares about its outputs: atomic writes into the output folder and the summary line.

A job's outputs may be picked up by another process (a catalogue ingest, a transfer) as soon as they
appear, so each is written under a hidden temporary name in the same folder, flushed to disk and renamed
into place: a reader sees the whole file or none. The run ends with `AnalysisResult.summary_line`, the one
JSON line the analyzer reads from stdout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

DISTRIBUTION: Final = "beamflow"


def software_version() -> str:
    """The installed beamflow version, or "unknown" when run from a tree that was never installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems (and every directory on some platforms) refuse fsync; the rename is still atomic.
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on a clean exit flush it to disk and rename it to ``final``.

    On an exception the temporary file is removed and ``final`` is left as it was.
    """
    # Hidden, and unique per process, so two jobs writing the same folder never share a temporary file.
    temp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield temp
        _fsync_path(temp)
        os.replace(temp, final)
    except BaseException:
        with suppress(OSError):
            temp.unlink()
        raise
    with suppress(OSError):
        _fsync_path(final.parent, directory=True)


def write_text_atomic(final: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` through `atomic_output`."""
    with atomic_output(final) as temp:
        temp.write_text(text, encoding="utf-8")


def prepare_output_dir(output: Path) -> Path:
    """Create the output folder if needed and return it resolved, so outputs can be named relative to it."""
    output.mkdir(parents=True, exist_ok=True)
    return output.resolve()


@dataclass
class AnalysisResult:
    """What a run produced: output files (relative to the output folder), the parameters used, warnings."""

    analysis: str
    output_dir: Path
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add_output(self, path: Path) -> None:
        self.outputs.append(path.relative_to(self.output_dir).as_posix())

    def summary(self) -> dict[str, Any]:
        return {
            "analysis": self.analysis,
            "outputs": list(self.outputs),
            "parameters": self.parameters,
            "software": {"name": f"beamflow.analyzer.analyses.{self.analysis}", "version": software_version()},
        }

    def summary_line(self) -> str:
        """The summary as one line of strict JSON (NaN and infinity are refused, not written)."""
        return json.dumps(self.summary(), allow_nan=False, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    # Parameters may carry numpy scalars and paths; anything else unknown is a bug worth a clear error.
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"parameter value of type {type(value).__name__} is not JSON serialisable")
