"""The exceptions the analyses raise on purpose, and the exit code each one means on the command line.

The analyzer only sees exit codes, so each failure family maps to one: `AnalysisUsageError` (the command
line is wrong, exit 2) and `AnalysisInputError` (an input file cannot be read or does not hold what the
analysis needs, exit 3). Any other exception is a bug or an environment failure (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from beamflow.common.errors import BeamflowError

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INPUT: Final = 3


class AnalysisError(BeamflowError):
    """Base of the errors an analysis raises on purpose."""

    exit_code: int = EXIT_FAILURE


class AnalysisUsageError(AnalysisError):
    """The options or the list of inputs cannot work (no usable input, conflicting options)."""

    exit_code = EXIT_USAGE


class AnalysisInputError(AnalysisError):
    """``path`` cannot be used: ``reason`` says why, ``remedy`` (if any) what the operator can do about it."""

    exit_code = EXIT_INPUT

    def __init__(self, path: Path | str, reason: str, remedy: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.remedy = remedy
        message = f"{self.path}: {reason}"
        if remedy:
            message += f" ({remedy})"
        super().__init__(message)
