"""8.3.2 micro-tomography: a reduced-resolution, flat-field corrected preview of a scan's projections.

Usage: ``python -m beamflow.analyzer.analyses.tomo_preview --output DIR [options] INPUT...`` (``--help``
lists the options). Each HDF5 input (DX layout, as the beamline and `beamflow.common.simulate.write_scan_832`
write it: projections in ``/exchange/data`` as angles x rows x columns, flats in ``/exchange/data_white``,
darks in ``/exchange/data_dark``, angles in degrees in ``/exchange/theta``) gives ``<stem>_preview.h5``:

* ``/level_1``, ``/level_2``, ...: groups, each holding ``data`` (float32; gzip, shuffle, one chunk per
  projection tile of at most 256 x 256) and ``theta``. Level k is the 2 x 2 mean binning of level k - 1
  (level 0 being the corrected projections, which are not stored), so its pixels are 2^k source pixels
  wide. Level 1 is always written; each further level only while its smaller side is at least
  ``--min-size`` pixels (default 64). A trailing odd row or column is dropped when binning.
* Projections are corrected first when the file has flats and/or darks (`beamflow.analyzer.analyses.
  flatfield`): (projection - dark) / (flat - dark), 0 where the flat does not exceed the dark, clipped at 0.
* Angles are not binned by default: a preview is for looking at individual views (alignment, sample in the
  field of view, exposure), and averaging two views of a rotating sample blurs both. ``--bin-angles`` also
  halves the number of projections at each level (the mean of consecutive pairs, their angles averaged),
  for a smaller preview of a scan with many angles. ``/theta`` is a copy of the source angles (units
  kept); each level's ``theta`` is a link to it, or its own binned angles with ``--bin-angles``.
* Attributes: on the file and on every level, ``binning`` (pixel factor), ``angle_binning``,
  ``source_file``, ``source_dataset``, ``shape`` and ``correction`` (flat-dark, flat, dark or none).

Memory stays bounded whatever the scan's size: projections are read, corrected and binned ``chunk`` at a
time (``--chunk-projections``, or as many as fit in ``--memory-mb``, default 512). For projections of
R x C pixels the peak is about R * C * (6 * chunk + 16) bytes: a float32 chunk buffer (4 bytes a pixel),
the binned levels and their temporaries (under 2 more), plus the dark and flat frames and the float64 sum
that averages them (16 a pixel), and a few MiB of HDF5 caches. The whole stack is never loaded.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt

from .binning import AnglePairer, bin_angles, bin_pixels
from .cli import add_common_arguments, positive_float, positive_int, run
from .errors import AnalysisInputError, AnalysisUsageError
from .flatfield import FlatField, FrameReader, frame_mean
from .inputs import select_inputs, skipped_note
from .output import AnalysisResult, atomic_output, prepare_output_dir, software_version

NAME: Final = "tomo_preview"
DATA: Final = "/exchange/data"
FLATS: Final = "/exchange/data_white"
DARKS: Final = "/exchange/data_dark"
ANGLES: Final = "/exchange/theta"
HDF5_SUFFIXES: Final = (".h5", ".hdf5", ".hdf", ".nxs")
DEFAULT_MIN_SIZE: Final = 64
DEFAULT_MEMORY_MB: Final = 512
TILE: Final = 256
GZIP_LEVEL: Final = 4
# The memory model of the module docstring, in bytes per pixel of one projection.
BYTES_PER_CHUNK_PIXEL: Final = 6
FIXED_BYTES_PER_PIXEL: Final = 16


@dataclass(frozen=True)
class Level:
    """One level of the preview: its group name, binning factors and the shape of its ``data``."""

    index: int
    binning: int
    angle_binning: int
    shape: tuple[int, int, int]

    @property
    def name(self) -> str:
        return f"level_{self.index}"


def plan_levels(shape: tuple[int, int, int], min_size: int = DEFAULT_MIN_SIZE, *, angles: bool = False) -> list[Level]:
    """The levels of a preview of a stack of ``shape`` (angles, rows, cols); empty if it is too small to bin."""
    n, rows, cols = shape
    levels: list[Level] = []
    k = 1
    while True:
        n_k = n >> k if angles else n
        r_k, c_k = rows >> k, cols >> k
        if n_k < 1 or r_k < 1 or c_k < 1 or (k > 1 and min(r_k, c_k) < min_size):
            return levels
        levels.append(Level(k, 1 << k, (1 << k) if angles else 1, (n_k, r_k, c_k)))
        k += 1


def memory_bound(rows: int, cols: int, chunk: int) -> int:
    """Peak bytes of previewing projections of rows x cols, ``chunk`` at a time (HDF5 caches aside)."""
    return rows * cols * (BYTES_PER_CHUNK_PIXEL * chunk + FIXED_BYTES_PER_PIXEL)


def chunk_for_memory(rows: int, cols: int, memory_bytes: int) -> int:
    """The most projections per chunk that keep `memory_bound` within ``memory_bytes`` (at least 1)."""
    spare = memory_bytes - rows * cols * FIXED_BYTES_PER_PIXEL
    return max(1, spare // (rows * cols * BYTES_PER_CHUNK_PIXEL))


def _open_dataset(f: h5py.File, source: Path, name: str, what: str, option: str, required: bool) -> Any:
    try:
        obj = f.get(name)
    except (KeyError, OSError, ValueError) as exc:
        raise AnalysisInputError(source, f"cannot open the {what} {name}: {exc}") from exc
    if obj is None:
        if required:
            raise AnalysisInputError(source, f"no {what} dataset {name}", f"pass {option} with its path in the file")
        return None
    if not isinstance(obj, h5py.Dataset):
        raise AnalysisInputError(source, f"{name} is not a dataset (a group?)", f"pass {option} with a dataset")
    if obj.dtype.kind not in "biuf":
        raise AnalysisInputError(source, f"the {what} {name} holds {obj.dtype}, not numbers")
    return obj


def _reader(source: Path, dataset: Any) -> FrameReader:
    def read(start: int, stop: int, buffer: npt.NDArray[np.float32]) -> None:
        try:
            # HDF5 converts to float32 while reading, so no full-size copy in the source type is made.
            dataset.read_direct(buffer, source_sel=np.s_[start:stop], dest_sel=np.s_[0 : stop - start])
        except (OSError, ValueError, TypeError) as exc:
            raise AnalysisInputError(source, f"cannot read {dataset.name}[{start}:{stop}]: {exc}") from exc

    return read


def _frames_mean(
    f: h5py.File, source: Path, name: str, what: str, option: str, required: bool, frame: tuple[int, int], chunk: int
) -> tuple[npt.NDArray[np.float32] | None, str | None, list[str]]:
    """(mean frame, dataset used, warnings) of the darks or flats at ``name``; None if the file has none."""
    dataset = _open_dataset(f, source, name, what, option, required)
    if dataset is None:
        return None, None, []
    if dataset.ndim != 3 or tuple(dataset.shape[1:]) != frame:
        raise AnalysisInputError(
            source, f"the {what} {name} have shape {dataset.shape}; frames of {frame} were expected"
        )
    if dataset.shape[0] == 0:
        return None, None, [f"{source}: the {what} {name} hold no frames; not used"]
    mean = frame_mean(_reader(source, dataset), int(dataset.shape[0]), frame, chunk)
    return mean, name, []


def _write_angles(
    f: h5py.File, out: h5py.File, source: Path, name: str, option: str, required: bool, levels: list[Level], n: int
) -> tuple[str | None, list[str]]:
    """Copy the angles to ``/theta`` and give each level its ``theta``; (dataset used, warnings)."""
    dataset = _open_dataset(f, source, name, "angles", option, required)
    if dataset is None:
        return None, [f"{source}: no angles at {name}; the preview has none"]
    try:
        theta = np.asarray(dataset[()], dtype=np.float64).reshape(-1)
    except (OSError, ValueError, TypeError) as exc:
        raise AnalysisInputError(source, f"cannot read the angles {name}: {exc}") from exc
    copy = out.create_dataset("theta", data=theta)
    for key, value in dataset.attrs.items():
        copy.attrs[key] = value
    copy.attrs["source_dataset"] = name
    if theta.shape[0] != n:
        if any(level.angle_binning > 1 for level in levels):
            raise AnalysisInputError(
                source, f"{name} has {theta.shape[0]} angles for {n} projections, so they cannot be binned"
            )
        return name, [f"{source}: {name} has {theta.shape[0]} angles for {n} projections; levels carry no theta"]
    binned = theta
    for level in levels:
        if level.angle_binning > 1:
            binned = bin_angles(binned)
            level_theta = out.create_dataset(f"{level.name}/theta", data=binned)
            for key, value in dataset.attrs.items():
                level_theta.attrs[key] = value
        else:
            out[f"{level.name}/theta"] = h5py.SoftLink("/theta")
    return name, []


def _create_levels(out: h5py.File, levels: list[Level], common: dict[str, Any], units: str) -> list[Any]:
    """The empty ``data`` dataset of every level, in a group carrying the level's attributes."""
    stacks = []
    for level in levels:
        group = out.create_group(level.name)
        for key, value in common.items():
            group.attrs[key] = value
        group.attrs["binning"] = level.binning
        group.attrs["angle_binning"] = level.angle_binning
        group.attrs["shape"] = np.array(level.shape, dtype=np.int64)
        _, rows, cols = level.shape
        stack = group.create_dataset(
            "data",
            shape=level.shape,
            dtype=np.float32,
            # One projection tile per chunk: a viewer reads one projection without decompressing others.
            chunks=(1, min(rows, TILE), min(cols, TILE)),
            compression="gzip",
            compression_opts=GZIP_LEVEL,
            shuffle=True,
        )
        stack.attrs["units"] = units
        stack.attrs["binning"] = level.binning
        stack.attrs["angle_binning"] = level.angle_binning
        stacks.append(stack)
    return stacks


def _fill_levels(
    read: FrameReader,
    shape: tuple[int, int, int],
    chunk: int,
    field: FlatField,
    levels: list[Level],
    stacks: list[Any],
) -> None:
    """Read, correct and bin the projections ``chunk`` at a time, appending each level's share to its stack."""
    n, rows, cols = shape
    buffer = np.empty((chunk, rows, cols), dtype=np.float32)
    pairers = [AnglePairer() for _ in levels]
    written = [0] * len(levels)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        read(start, stop, buffer)
        current = buffer[: stop - start]
        field.apply(current)
        for i, level in enumerate(levels):
            current = bin_pixels(current)
            if level.angle_binning > 1:
                current = pairers[i].push(current)
            count = current.shape[0]
            if count:
                stacks[i][written[i] : written[i] + count] = current
                written[i] += count
    for level, count in zip(levels, written, strict=True):
        if count != level.shape[0]:
            raise RuntimeError(f"{level.name}: wrote {count} projections where {level.shape[0]} were planned")


def _preview_file(
    source: Path,
    target: Path,
    *,
    dataset: str,
    flats: str | None,
    darks: str | None,
    angles: str | None,
    correct: bool,
    min_flat_difference: float,
    min_size: int,
    angle_binning: bool,
    chunk_projections: int | None,
    memory_mb: float,
) -> tuple[dict[str, Any], list[str]]:
    warnings: list[str] = []
    try:
        f = h5py.File(source, "r")
    except OSError as exc:
        raise AnalysisInputError(
            source, f"not a readable HDF5 file ({exc})", "check that the file was copied completely"
        ) from exc
    with f:
        data = _open_dataset(f, source, dataset, "projections", "--dataset", True)
        if data.ndim != 3 or 0 in data.shape:
            raise AnalysisInputError(
                source, f"the projections {dataset} have shape {data.shape}; angles x rows x columns were expected"
            )
        n, rows, cols = (int(x) for x in data.shape)
        levels = plan_levels((n, rows, cols), min_size, angles=angle_binning)
        if not levels:
            raise AnalysisInputError(source, f"the projections {dataset} ({n} x {rows} x {cols}) are too small to bin")
        budget = int(memory_mb * (1 << 20))
        chunk = min(chunk_projections or chunk_for_memory(rows, cols, budget), n)
        bound = memory_bound(rows, cols, chunk)
        if chunk_projections is None and bound > budget:
            warnings.append(
                f"{source}: one projection of {rows} x {cols} needs about {bound >> 20} MiB, above --memory-mb"
            )

        dark, dark_used, flat, flat_used = None, None, None, None
        if correct:
            dark, dark_used, found = _frames_mean(
                f, source, darks or DARKS, "darks", "--darks", darks is not None, (rows, cols), chunk
            )
            warnings += found
            flat, flat_used, found = _frames_mean(
                f, source, flats or FLATS, "flats", "--flats", flats is not None, (rows, cols), chunk
            )
            warnings += found
        field = FlatField.from_frames(dark, flat, min_flat_difference)
        del dark, flat

        common = {
            "source_file": str(source.absolute()),
            "source_dataset": dataset,
            "source_shape": np.array([n, rows, cols], dtype=np.int64),
            "correction": field.kind,
            "dark_dataset": dark_used or "",
            "flat_dataset": flat_used or "",
        }
        units = "counts" if field.divisor is None else "transmission"
        with atomic_output(target) as temp, h5py.File(temp, "w") as out:
            out.attrs["analysis"] = NAME
            out.attrs["software"] = f"beamflow.analyzer.analyses.{NAME} {software_version()}"
            out.attrs["levels"] = len(levels)
            out.attrs["min_size"] = min_size
            for key, value in common.items():
                out.attrs[key] = value
            stacks = _create_levels(out, levels, common, units)
            angles_used, found = _write_angles(
                f, out, source, angles or ANGLES, "--angles", angles is not None, levels, n
            )
            warnings += found
            _fill_levels(_reader(source, data), (n, rows, cols), chunk, field, levels, stacks)

    record: dict[str, Any] = {
        "input": str(source),
        "dataset": dataset,
        "shape": [n, rows, cols],
        "correction": field.kind,
        "darks": dark_used,
        "flats": flat_used,
        "angles": angles_used,
        "chunk_projections": chunk,
        "memory_bound_bytes": bound,
        "levels": [
            {
                "name": level.name,
                "binning": level.binning,
                "angle_binning": level.angle_binning,
                "shape": list(level.shape),
            }
            for level in levels
        ],
    }
    return record, warnings


def preview(
    inputs: Sequence[Path],
    output: Path,
    *,
    dataset: str = DATA,
    flats: str | None = None,
    darks: str | None = None,
    angles: str | None = None,
    correct: bool = True,
    min_flat_difference: float = 1.0,
    min_size: int = DEFAULT_MIN_SIZE,
    angle_binning: bool = False,
    chunk_projections: int | None = None,
    memory_mb: float = DEFAULT_MEMORY_MB,
) -> AnalysisResult:
    """Write ``<stem>_preview.h5`` into ``output`` for every HDF5 file among ``inputs``.

    ``flats``, ``darks`` and ``angles`` default to the DX paths, used when present; a path given explicitly
    must exist. Raises `AnalysisUsageError` for unusable options or inputs and `AnalysisInputError` for a
    file that cannot be read or lacks the projections.
    """
    if min_size < 1:
        raise AnalysisUsageError(f"min_size must be at least 1, got {min_size}")
    if chunk_projections is not None and chunk_projections < 1:
        raise AnalysisUsageError(f"chunk_projections must be at least 1, got {chunk_projections}")
    if not (memory_mb > 0 and math.isfinite(memory_mb)):
        raise AnalysisUsageError(f"memory_mb must be a number above 0, got {memory_mb}")
    if not correct and (flats is not None or darks is not None):
        raise AnalysisUsageError("flats or darks were given but correction is off; drop one or the other")
    files, others = select_inputs(inputs, HDF5_SUFFIXES, "an HDF5 file")
    out_dir = prepare_output_dir(output)
    result = AnalysisResult(NAME, out_dir)
    result.warnings.extend(skipped_note(path, "an HDF5 file") for path in others)
    records = []
    for source in files:
        target = out_dir / f"{source.stem}_preview.h5"
        record, warnings = _preview_file(
            source,
            target,
            dataset=dataset,
            flats=flats,
            darks=darks,
            angles=angles,
            correct=correct,
            min_flat_difference=min_flat_difference,
            min_size=min_size,
            angle_binning=angle_binning,
            chunk_projections=chunk_projections,
            memory_mb=memory_mb,
        )
        result.add_output(target)
        result.warnings.extend(warnings)
        records.append(record)
    result.parameters = {
        "dataset": dataset,
        "flats": flats,
        "darks": darks,
        "angles": angles,
        "correct": correct,
        "min_flat_difference": min_flat_difference,
        "min_size": min_size,
        "bin_angles": angle_binning,
        "chunk_projections": chunk_projections,
        "memory_mb": memory_mb,
        "files": records,
    }
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m beamflow.analyzer.analyses.{NAME}",
        description=(
            "Write a multi-resolution preview (<stem>_preview.h5 in DIR: groups level_1, level_2, ... of 2x2 "
            "mean-binned float32 projections, flat/dark corrected when the file has flats or darks) of 8.3.2 "
            "DX-layout HDF5 scans. Memory is bounded by processing a chunk of projections at a time. Prints one "
            "JSON summary line on stdout. Exit codes: 0 done, 2 bad usage, 3 unreadable or invalid input, "
            "1 other failure."
        ),
    )
    add_common_arguments(parser, "the scan's files: HDF5 files (.h5, .hdf5, .hdf, .nxs) are previewed")
    parser.add_argument("--dataset", default=DATA, metavar="PATH", help=f"projections dataset (default {DATA})")
    parser.add_argument("--flats", metavar="PATH", help=f"flat (white) frames (default {FLATS}, if present)")
    parser.add_argument("--darks", metavar="PATH", help=f"dark frames (default {DARKS}, if present)")
    parser.add_argument("--angles", metavar="PATH", help=f"projection angles (default {ANGLES}, if present)")
    parser.add_argument("--no-correction", action="store_true", help="do not flat/dark-correct the projections")
    parser.add_argument(
        "--min-flat-difference",
        type=positive_float,
        default=1.0,
        metavar="COUNTS",
        help="pixels whose flat exceeds the dark by less than this are set to 0 (default 1)",
    )
    parser.add_argument(
        "--min-size",
        type=positive_int,
        default=DEFAULT_MIN_SIZE,
        metavar="PIXELS",
        help=f"add levels while their smaller side is at least this (default {DEFAULT_MIN_SIZE}; level_1 always)",
    )
    parser.add_argument(
        "--bin-angles", action="store_true", help="also average consecutive pairs of projections at each level"
    )
    parser.add_argument(
        "--chunk-projections", type=positive_int, metavar="N", help="projections per chunk (default: from --memory-mb)"
    )
    parser.add_argument(
        "--memory-mb",
        type=positive_float,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"memory to size the chunks for (default {DEFAULT_MEMORY_MB})",
    )
    return parser


def _run(args: argparse.Namespace) -> AnalysisResult:
    return preview(
        args.inputs,
        args.output,
        dataset=args.dataset,
        flats=args.flats,
        darks=args.darks,
        angles=args.angles,
        correct=not args.no_correction,
        min_flat_difference=args.min_flat_difference,
        min_size=args.min_size,
        angle_binning=args.bin_angles,
        chunk_projections=args.chunk_projections,
        memory_mb=args.memory_mb,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(NAME, build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
