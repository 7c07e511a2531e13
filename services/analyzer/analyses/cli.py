"""The command-line runner the analyses share: parse, run, print the summary line, map errors to exit codes.

The exit codes are the contract with the analyzer (see `beamflow.analyzer.analyses`): argparse itself
exits 2 on a bad command line; `AnalysisUsageError` also gives 2, `AnalysisInputError` 3, anything else 1
with the traceback on stderr for whoever reads the job's log.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import EXIT_FAILURE, EXIT_OK, AnalysisError
from .output import AnalysisResult


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than zero."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, inputs_help: str) -> None:
    """The options every analysis takes: ``--output DIR`` and the input files."""
    parser.add_argument(
        "--output", "-o", type=Path, required=True, metavar="DIR", help="folder for the outputs (created if missing)"
    )
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help=inputs_help)


def run(
    name: str,
    parser: argparse.ArgumentParser,
    action: Callable[[argparse.Namespace], AnalysisResult],
    argv: Sequence[str] | None = None,
) -> int:
    """Run ``action`` on the parsed command line; return the process exit code."""
    args = parser.parse_args(argv)
    try:
        result = action(args)
    except AnalysisError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception:
        print(f"{name}: failed unexpectedly:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILURE
    for warning in result.warnings:
        print(f"{name}: warning: {warning}", file=sys.stderr)
    print(result.summary_line(), flush=True)
    return EXIT_OK
