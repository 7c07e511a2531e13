"""7.3.3 SAXS/WAXS: azimuthal integration of a detector image into a 1-D profile I(q).

Usage: ``python -m beamflow.analyzer.analyses.saxs_integrate --output DIR [options] INPUT...`` (``--help``
lists the options). INPUT are the scan's files: each ``.edf`` image is integrated, with the geometry from
its EDF header and its companion ``<stem>.txt`` header (given among the inputs or lying beside the image),
overridable by options (`beamflow.analyzer.analyses.geometry`). Per image it writes

* ``<stem>_iq.txt``: comment lines (``#``) with the source, the geometry and units, then the columns
  q [1/Å], I, sigma, npix;
* ``<stem>_iq.h5``: datasets ``q``, ``I``, ``sigma``, ``npix`` (each with a ``units`` attribute) and the
  geometry as attributes of the file.

The numbers: each pixel's q is binned into ``bins`` equal-width bins spanning the q range of the pixels
used (or ``--q-min``/``--q-max``); I is the mean pixel value per bin, npix the number of pixels in it and
sigma the Poisson standard error of that mean, sqrt(sum of counts) / npix (the pixel values are counts).
Empty bins have I = sigma = nan. Pixels left out: negative or non-finite values (the detector's flag for
gaps and bad pixels), rows and columns that are zero in every pixel (module gaps of a detector that writes
them as 0; ``--keep-zero-lines`` keeps them) and the non-zero pixels of ``--mask``. No solid-angle,
polarisation or transmission correction is applied: this is a quick-look profile, not a reduction.

Only the first frame of a multi-frame EDF file is integrated (what `beamflow.common.edf.read_edf` reads);
a warning says so.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt
from beamflow.common.edf import EdfError, read_edf

from .cli import add_common_arguments, finite_float, positive_float, positive_int, run
from .errors import AnalysisInputError, AnalysisUsageError
from .geometry import Geometry, GeometryOverrides, q_map, resolve_geometry
from .inputs import select_inputs, skipped_note
from .output import AnalysisResult, atomic_output, prepare_output_dir, software_version, write_text_atomic
from .txt_header import read_txt_header

NAME: Final = "saxs_integrate"
DEFAULT_BINS: Final = 500
IMAGE_SUFFIXES: Final = (".edf",)
HEADER_SUFFIX: Final = ".txt"
MASK_SUFFIXES: Final = (".npy", ".edf")
Q_UNITS: Final = "1/angstrom"
I_UNITS: Final = "counts/pixel"

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass
class Profile:
    """I(q) of one image. ``q`` are bin centres; ``q_edges`` has one more entry than the bins."""

    q: FloatArray
    q_edges: FloatArray
    intensity: FloatArray
    sigma: FloatArray
    npix: npt.NDArray[np.int64]


def valid_pixels(
    image: npt.NDArray[Any], mask: npt.NDArray[Any] | None = None, *, mask_zero_lines: bool = True
) -> BoolArray:
    """True where a pixel takes part in the integration (see the module docstring for what is left out).

    ``mask`` has the image's shape; its non-zero pixels are left out (the convention of common SAXS tools).
    """
    values = np.asarray(image, dtype=np.float64)
    valid: BoolArray = np.isfinite(values) & (values >= 0)
    if mask_zero_lines:
        zero = values == 0
        valid &= ~zero.all(axis=1)[:, None]
        valid &= ~zero.all(axis=0)[None, :]
    if mask is not None:
        valid &= np.asarray(mask) == 0
    return valid


def azimuthal_profile(
    image: npt.NDArray[Any],
    geometry: Geometry,
    *,
    bins: int = DEFAULT_BINS,
    valid: BoolArray | None = None,
    q_range: tuple[float | None, float | None] = (None, None),
) -> Profile:
    """Bin the pixels of a 2-D ``image`` by q; ``valid`` (default: every finite pixel) selects the pixels used.

    ``q_range`` bounds the bins (1/Å); a None end is the q of the outermost used pixel on that side.
    Raises `ValueError` when no pixel is left to bin.
    """
    values = np.asarray(image, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"an image is 2-D, got shape {values.shape}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    used = np.isfinite(values) if valid is None else valid & np.isfinite(values)
    q = q_map((values.shape[0], values.shape[1]), geometry)[used]
    counts = values[used]
    if q.size == 0:
        raise ValueError("every pixel is masked: nothing to integrate")
    q_lo = float(q.min()) if q_range[0] is None else float(q_range[0])
    q_hi = float(q.max()) if q_range[1] is None else float(q_range[1])
    if not q_hi > q_lo:
        raise ValueError(f"empty q range [{q_lo}, {q_hi}] 1/Å: widen it or use more pixels")
    inside = (q >= q_lo) & (q <= q_hi)
    q, counts = q[inside], counts[inside]
    # Bin i holds q_lo + i*w <= q < q_lo + (i+1)*w; the pixel exactly at q_hi belongs to the last bin.
    index = np.minimum(((q - q_lo) * (bins / (q_hi - q_lo))).astype(np.intp), bins - 1)
    npix = np.bincount(index, minlength=bins).astype(np.int64)
    total = np.bincount(index, weights=counts, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(npix > 0, total / npix, np.nan)
        sigma = np.where(npix > 0, np.sqrt(total) / npix, np.nan)
    edges = np.linspace(q_lo, q_hi, bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    return Profile(centres, edges, intensity, sigma, npix)


def load_mask(path: Path) -> npt.NDArray[Any]:
    """A mask image from ``.npy`` or ``.edf`` (non-zero = left out); `AnalysisInputError` if unreadable."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            mask = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AnalysisInputError(path, f"cannot read the mask as a .npy array: {exc}") from exc
    elif suffix == ".edf":
        try:
            edf = read_edf(path)
        except EdfError as exc:
            raise AnalysisInputError(path, f"cannot read the mask: {exc.reason}", exc.remedy) from exc
        if edf.data is None:
            raise AnalysisInputError(path, "the mask's pixels cannot be decoded (compressed or unknown DataType)")
        mask = edf.data
    else:
        raise AnalysisUsageError(f"--mask {path}: a mask is a {' or '.join(MASK_SUFFIXES)} file")
    if mask.ndim != 2:
        raise AnalysisInputError(path, f"a mask is a 2-D image, this one has shape {mask.shape}")
    return np.asarray(mask)


def _companion(image: Path, headers: dict[str, list[Path]]) -> Path | None:
    """The image's ``.txt`` header: one given among the inputs (same folder first), else the one beside it."""
    given = headers.get(image.stem, [])
    for path in given:
        if path.parent == image.parent:
            return path
    if given:
        return given[0]
    beside = image.with_suffix(HEADER_SUFFIX)
    return beside if beside.is_file() else None


def _read_image(path: Path) -> tuple[npt.NDArray[Any], dict[str, str], int]:
    try:
        edf = read_edf(path)
    except EdfError as exc:
        raise AnalysisInputError(path, exc.reason, exc.remedy) from exc
    if edf.data is None:
        why = "; ".join(edf.warnings) or "no pixels were read"
        raise AnalysisInputError(path, f"the first frame's pixels cannot be decoded ({why})")
    if edf.data.ndim != 2:
        raise AnalysisInputError(path, f"the first frame is not a 2-D image (shape {edf.data.shape})")
    return edf.data, edf.header, edf.frames


def _txt_text(profile: Profile, geometry: Geometry, source: Path, record: dict[str, Any]) -> str:
    header = [
        f"beamflow {NAME} {software_version()}: azimuthal average of {source.name}",
        f"source = {source.absolute()}",
        f"frame = 1 of {record['frames']}",
        *(f"{key} = {value:.10g}" for key, value in geometry.as_dict().items()),
        f"bins = {len(profile.q)}",
        f"q_min_1/A = {profile.q_edges[0]:.10g}",
        f"q_max_1/A = {profile.q_edges[-1]:.10g}",
        f"valid_pixels = {record['valid_pixels']}",
        f"masked_pixels = {record['masked_pixels']}",
        "I: mean pixel value (counts) in the q bin; sigma: Poisson standard error sqrt(sum)/npix; empty bins: nan",
        "q [1/Å]  I [counts/pixel]  sigma [counts/pixel]  npix",
    ]
    table = np.column_stack([profile.q, profile.intensity, profile.sigma, profile.npix.astype(np.float64)])
    buffer = io.StringIO()
    np.savetxt(buffer, table, fmt=["%.8e", "%.8e", "%.8e", "%d"], header="\n".join(header), comments="# ")
    return buffer.getvalue()


def _write_h5(path: Path, profile: Profile, geometry: Geometry, source: Path, record: dict[str, Any]) -> None:
    with atomic_output(path) as temp, h5py.File(temp, "w") as f:
        f.attrs["analysis"] = NAME
        f.attrs["software"] = f"beamflow.analyzer.analyses.{NAME} {software_version()}"
        f.attrs["source_file"] = str(source.absolute())
        f.attrs["frame"] = 1
        f.attrs["frames_in_source"] = record["frames"]
        f.attrs["valid_pixels"] = record["valid_pixels"]
        f.attrs["masked_pixels"] = record["masked_pixels"]
        for key, value in geometry.as_dict().items():
            f.attrs[key] = value
        for name, data, units in (
            ("q", profile.q, Q_UNITS),
            ("q_edges", profile.q_edges, Q_UNITS),
            ("I", profile.intensity, I_UNITS),
            ("sigma", profile.sigma, I_UNITS),
            ("npix", profile.npix, "pixels"),
        ):
            f.create_dataset(name, data=data).attrs["units"] = units
        f["I"].attrs["uncertainties"] = "sigma"


def integrate(
    inputs: Sequence[Path],
    output: Path,
    *,
    bins: int = DEFAULT_BINS,
    mask: Path | None = None,
    overrides: GeometryOverrides | None = None,
    q_min: float | None = None,
    q_max: float | None = None,
    mask_zero_lines: bool = True,
) -> AnalysisResult:
    """Integrate every EDF image among ``inputs`` into ``output``; the CLI's summary comes from the result.

    Raises `AnalysisUsageError` for options or inputs that cannot work together and `AnalysisInputError`
    for a file that cannot be read or lacks the geometry.
    """
    if bins < 1:
        raise AnalysisUsageError(f"bins must be at least 1, got {bins}")
    if q_min is not None and q_max is not None and not q_max > q_min:
        raise AnalysisUsageError(f"q_max ({q_max}) must be above q_min ({q_min})")
    images, others = select_inputs(inputs, IMAGE_SUFFIXES, "an EDF image")
    headers: dict[str, list[Path]] = {}
    for path in inputs:
        if path.suffix.lower() == HEADER_SUFFIX:
            headers.setdefault(path.stem, []).append(path)
    used_headers: set[Path] = set()
    mask_image = load_mask(mask) if mask is not None else None
    mask_shape = mask_image.shape if mask_image is not None else None
    out_dir = prepare_output_dir(output)
    result = AnalysisResult(NAME, out_dir)
    records: list[dict[str, Any]] = []

    for image_path in images:
        pixels, edf_header, frames = _read_image(image_path)
        txt_path = _companion(image_path, headers)
        companion = (txt_path, read_txt_header(txt_path)) if txt_path is not None else None
        if txt_path is not None:
            used_headers.add(txt_path)
        geometry, sources = resolve_geometry(image_path, edf_header, companion, overrides)
        if mask is not None and mask_shape != pixels.shape:
            raise AnalysisInputError(mask, f"the mask has shape {mask_shape} but {image_path.name} is {pixels.shape}")
        valid = valid_pixels(pixels, mask_image, mask_zero_lines=mask_zero_lines)
        try:
            profile = azimuthal_profile(pixels, geometry, bins=bins, valid=valid, q_range=(q_min, q_max))
        except ValueError as exc:
            raise AnalysisInputError(image_path, str(exc), "check the mask and --q-min/--q-max") from exc
        if frames > 1:
            result.warnings.append(f"{image_path}: has {frames} frames; only the first was integrated")
        record: dict[str, Any] = {
            "input": str(image_path),
            "header": str(txt_path) if txt_path is not None else None,
            "frames": frames,
            "shape": list(pixels.shape),
            "geometry": geometry.as_dict(),
            "geometry_sources": sources,
            "q_range": [float(profile.q_edges[0]), float(profile.q_edges[-1])],
            "valid_pixels": int(valid.sum()),
            "masked_pixels": int(valid.size - valid.sum()),
        }
        txt_out = out_dir / f"{image_path.stem}_iq.txt"
        h5_out = out_dir / f"{image_path.stem}_iq.h5"
        write_text_atomic(txt_out, _txt_text(profile, geometry, image_path, record))
        _write_h5(h5_out, profile, geometry, image_path, record)
        result.add_output(txt_out)
        result.add_output(h5_out)
        records.append(record)

    result.warnings.extend(
        skipped_note(path, "an EDF image or the header of one") for path in others if path not in used_headers
    )
    result.parameters = {
        "bins": bins,
        "q_min": q_min,
        "q_max": q_max,
        "q_units": Q_UNITS,
        "mask": str(mask) if mask is not None else None,
        "mask_zero_lines": mask_zero_lines,
        "overrides": (overrides or GeometryOverrides()).given(),
        "images": records,
    }
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m beamflow.analyzer.analyses.{NAME}",
        description=(
            "Azimuthally integrate 7.3.3 SAXS/WAXS EDF images into I(q) profiles (<stem>_iq.txt and <stem>_iq.h5 "
            "in DIR). The geometry comes from each image's EDF header (Center_1, Center_2, PSize_1, PSize_2, "
            "SampleDistance, WaveLength) and its companion <stem>.txt ('Beam Center X', 'Beam Center Y', "
            "'Sample-Detector Distance', 'Wavelength', 'Energy'); the options below override them. Prints one "
            "JSON summary line on stdout. Exit codes: 0 done, 2 bad usage, 3 unreadable or invalid input, "
            "1 other failure."
        ),
    )
    add_common_arguments(parser, "the scan's files: .edf images are integrated, .txt headers supply geometry")
    parser.add_argument(
        "--bins", type=positive_int, default=DEFAULT_BINS, help=f"number of q bins (default {DEFAULT_BINS})"
    )
    parser.add_argument(
        "--mask", type=Path, metavar="FILE", help="mask image (.npy or .edf, the image's shape); non-zero = ignore"
    )
    parser.add_argument(
        "--keep-zero-lines",
        action="store_true",
        help="do not ignore rows and columns that are 0 in every pixel (by default they are detector gaps)",
    )
    parser.add_argument("--q-min", type=finite_float, metavar="Q", help="lower edge of the first bin, 1/Å")
    parser.add_argument("--q-max", type=finite_float, metavar="Q", help="upper edge of the last bin, 1/Å")
    geometry = parser.add_argument_group("geometry overrides (win over the headers)")
    geometry.add_argument("--center-x", type=finite_float, metavar="PIXELS", help="beam centre, column (0 = first)")
    geometry.add_argument("--center-y", type=finite_float, metavar="PIXELS", help="beam centre, row (0 = first)")
    geometry.add_argument("--distance", type=positive_float, metavar="MM", help="sample-detector distance in mm")
    geometry.add_argument("--pixel-size", type=positive_float, metavar="UM", help="pixel size in µm (square pixels)")
    beam = geometry.add_mutually_exclusive_group()
    beam.add_argument("--wavelength", type=positive_float, metavar="ANGSTROM", help="X-ray wavelength in Å")
    beam.add_argument("--energy", type=positive_float, metavar="KEV", help="X-ray energy in keV")
    return parser


def _run(args: argparse.Namespace) -> AnalysisResult:
    overrides = GeometryOverrides(
        beam_center_x_px=args.center_x,
        beam_center_y_px=args.center_y,
        distance_mm=args.distance,
        pixel_size_um=args.pixel_size,
        wavelength_A=args.wavelength,
        energy_keV=args.energy,
    )
    return integrate(
        args.inputs,
        args.output,
        bins=args.bins,
        mask=args.mask,
        overrides=overrides,
        q_min=args.q_min,
        q_max=args.q_max,
        mask_zero_lines=not args.keep_zero_lines,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run(NAME, build_parser(), _run, argv)


if __name__ == "__main__":
    sys.exit(main())
