"""Choosing, among a scan's staged files, the ones an analysis reads.

The analyzer passes every file of the scan; each analysis takes the suffixes it understands and leaves the
rest with a note, so a scan that gains a sidecar file does not break its analysis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import AnalysisUsageError


def select_inputs(inputs: Sequence[Path], suffixes: Iterable[str], what: str) -> tuple[list[Path], list[Path]]:
    """(inputs whose suffix is one of ``suffixes``, the other inputs); `AnalysisUsageError` if none selected.

    Suffixes compare case-insensitively (``.EDF`` is an EDF image). Each selected file's stem names its
    outputs, so two selected files with one stem (in different folders) are refused rather than overwritten.
    """
    wanted = {s.lower() for s in suffixes}
    selected: list[Path] = []
    others: list[Path] = []
    for path in inputs:
        if path.suffix.lower() in wanted:
            if path not in selected:
                selected.append(path)
        elif path not in others:
            others.append(path)
    if not selected:
        raise AnalysisUsageError(f"none of the inputs is {what} (looked for {', '.join(sorted(wanted))} files)")
    stems: dict[str, Path] = {}
    for path in selected:
        other = stems.setdefault(path.stem, path)
        if other != path:
            raise AnalysisUsageError(
                f"{other} and {path} have the same name stem, so their outputs would overwrite each other; "
                "run the analysis once per file"
            )
    return selected, others


def skipped_note(path: Path, what: str) -> str:
    """The warning for an input the analysis does not read."""
    return f"{path}: not {what}; skipped"
