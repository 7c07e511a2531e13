"""Metadata extractor for beamline 8.3.2 (micro-tomography): one HDF5 file per scan, in the "DX" layout.

Where things are in a DX file:

* catalogue fields: ``/measurement/sample/experiment/{pi, proposal, beamline, experiment_lead}``,
  ``/measurement/sample/experimenter/{email, name}``, ``/measurement/sample/file_name`` and
  ``/measurement/instrument/instrument_name``;
* scalar parameters (about 45) under ``/measurement/instrument/...`` and ``/process/acquisition/...``;
* per-projection series (ring current, energy, exposure time, time stamps, motor positions);
* images: ``/exchange/data`` (angles x rows x cols), ``/exchange/data_white``, ``/exchange/data_dark`` and
  the angles in ``/exchange/theta``.

The files are written by beamline software over many years, so: strings are byte strings, sometimes with
stray quotes and commas (``" 'a@b.gov', "``) or ``NONE``; scalars are usually 1-element arrays. Every string
is cleaned (`clean_text`), every 1-element array unwrapped, and a ``units`` attribute kept as
``{"value": ..., "unit": ...}``.

What the catalogue gets: Owner = PI, ownerGroup = proposal (the seed's rule), the beamline as an access
group, every scalar parameter grouped by its HDF5 group path, a sample of each series (first, last, min,
max, mean and 10 evenly spaced values), a summary of the image datasets, the acquisition start as the
creation time, and a thumbnail of the first projection (log scale, 0.1th..99.9th percentile).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import h5py
import numpy as np
import numpy.typing as npt

from .base import (
    DEFAULT_TIMEZONE,
    Extracted,
    ProposalMapping,
    UnreadableScan,
    clean_email,
    clean_text,
    decode_text,
    epoch_to_datetime,
    parse_datetime,
    resolve_ownership,
    search_terms,
)
from .thumbnails import thumbnail_png

TECHNIQUE: Final = "tomography-832"
TECHNIQUES: Final = ("micro-tomography",)
KEYWORDS: Final = ("tomography", "micro-CT", "ALS")
HDF5_SUFFIXES: Final = (".h5", ".hdf5", ".hdf", ".nxs", ".dx")

PI: Final = "/measurement/sample/experiment/pi"
PROPOSAL: Final = "/measurement/sample/experiment/proposal"
BEAMLINE: Final = "/measurement/sample/experiment/beamline"
LEAD: Final = "/measurement/sample/experiment/experiment_lead"
EMAIL: Final = "/measurement/sample/experimenter/email"
EXPERIMENTER: Final = "/measurement/sample/experimenter/name"
FILE_NAME: Final = "/measurement/sample/file_name"
SAMPLE_NAME: Final = "/measurement/sample/name"
INSTRUMENT: Final = "/measurement/instrument/instrument_name"
START_DATE: Final = "/process/acquisition/start_date"
TIME_STAMP: Final = "/measurement/instrument/time_stamp"
DATA: Final = "/exchange/data"
EXCHANGE: Final = ("/exchange/data", "/exchange/data_white", "/exchange/data_dark", "/exchange/theta")
# Groups whose datasets are parameters and series (the exchange group holds the images).
PARAMETER_ROOTS: Final = ("/measurement", "/process")

#: Contrast window of the thumbnail (percentiles of the first projection).
THUMBNAIL_PERCENTILES: Final = (0.1, 99.9)
#: Evenly spaced values kept from each per-projection series.
SERIES_SAMPLES: Final = 10
# A 1-D dataset longer than this is data, not a series of readings: summarised by shape only.
MAX_SERIES: Final = 1_000_000
# Guard on scientificMetadata's size: SciCat documents are limited (16 MB in MongoDB), and nobody reads more.
MAX_PARAMETERS: Final = 5000


def _units(dataset: h5py.Dataset) -> str | None:
    for name in ("units", "unit", "Units"):
        if name in dataset.attrs:
            unit = clean_text(dataset.attrs[name])
            if unit:
                return unit
    return None


def _scalar(dataset: h5py.Dataset) -> Any:
    """The value of a scalar or 1-element dataset: text cleaned, numbers as Python numbers."""
    raw = dataset[()]
    if isinstance(raw, np.ndarray):
        raw = raw.reshape(-1)[0] if raw.size else None
    if isinstance(raw, np.generic):
        raw = raw.item()
    if isinstance(raw, bytes | bytearray | str):
        return clean_text(raw)
    return raw


def _with_unit(value: Any, unit: str | None) -> Any:
    return {"value": value, "unit": unit} if unit and value is not None else value


def _finite_float(value: Any) -> bool:
    return not (isinstance(value, float) and not math.isfinite(value))


def sample_series(values: npt.NDArray[Any], samples: int = SERIES_SAMPLES) -> dict[str, Any]:
    """first/last/min/max/mean (over finite values) and ``samples`` evenly spaced values of a 1-D series."""
    count = int(values.size)
    summary: dict[str, Any] = {"count": count}
    if count == 0:
        return summary
    indices = np.unique(np.linspace(0, count - 1, min(samples, count)).round().astype(int))
    if values.dtype.kind in "SUO":
        texts = [decode_text(v).strip() for v in values[indices]]
        summary.update(first=decode_text(values[0]).strip(), last=decode_text(values[-1]).strip())
        summary.update(samples=texts, sample_indices=indices.tolist())
        return summary
    numbers = values.astype(np.float64, copy=False)
    finite = numbers[np.isfinite(numbers)]
    summary.update(first=values[0].item(), last=values[-1].item())
    if finite.size:
        summary.update(min=float(finite.min()), max=float(finite.max()), mean=float(finite.mean()))
    if finite.size < count:
        summary["non_finite"] = int(count - finite.size)
    summary.update(samples=values[indices].tolist(), sample_indices=indices.tolist())
    return summary


class _Reader:
    """Reads one open DX file, collecting what it finds and a warning for each thing it could not."""

    def __init__(self, handle: h5py.File, path: Path) -> None:
        self.f = handle
        self.path = path
        self.warnings: list[str] = []

    def guarded(self, what: str, read: Callable[[], Any]) -> Any:
        # A damaged chunk or an odd dtype in one dataset must cost that value only, not the scan's record.
        try:
            return read()
        except (OSError, KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            self.warnings.append(f"could not read {what}: {exc}")
            return None

    def dataset(self, name: str) -> h5py.Dataset | None:
        try:
            item = self.f.get(name)
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            self.warnings.append(f"could not open {name}: {exc}")
            return None
        return item if isinstance(item, h5py.Dataset) else None

    def text(self, name: str, missing: str | None = None) -> str | None:
        dataset = self.dataset(name)
        if dataset is None:
            if missing:
                self.warnings.append(f"{name} is missing: {missing}")
            return None
        value = self.guarded(name, lambda: _scalar(dataset))
        if value is None:
            if missing:
                self.warnings.append(f"{name} is empty or NONE: {missing}")
            return None
        return clean_text(value) if not isinstance(value, str) else value

    def parameters(self) -> tuple[dict[str, dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """(scalar parameters by group path, series samples by dataset path, other arrays by path)."""
        groups: dict[str, dict[str, Any]] = {}
        series: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        count = 0
        non_finite: list[str] = []

        def visit(root: str, name: str, item: object) -> None:
            nonlocal count
            if not isinstance(item, h5py.Dataset) or count >= MAX_PARAMETERS:
                return
            full = f"{root}/{name}"
            count += 1
            unit = _units(item)
            if item.size <= 1:
                value = self.guarded(full, lambda: _scalar(item))
                if not _finite_float(value):
                    non_finite.append(full)
                parent, _, leaf = full.rpartition("/")
                groups.setdefault(parent, {})[leaf] = _with_unit(value, unit)
            elif item.ndim == 1 and item.size <= MAX_SERIES:
                summary = self.guarded(full, lambda: sample_series(item[()]))
                if summary is not None:
                    series[full] = {**summary, "unit": unit} if unit else summary
            else:
                arrays[full] = {"shape": list(item.shape), "dtype": str(item.dtype)}

        for root in PARAMETER_ROOTS:
            group = self.f.get(root)
            if isinstance(group, h5py.Group):
                visitor = functools.partial(visit, root)
                self.guarded(f"the datasets under {root}", functools.partial(group.visititems, visitor))
            else:
                self.warnings.append(f"{root} is missing: no parameters from it")
        if count >= MAX_PARAMETERS:
            self.warnings.append(f"more than {MAX_PARAMETERS} datasets; the rest are not in the metadata")
        if non_finite:
            self.warnings.append(f"NaN or infinite values (stored as null): {non_finite[:10]}")
        return groups, series, arrays

    def exchange(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for name in EXCHANGE:
            dataset = self.dataset(name)
            if dataset is None:
                self.warnings.append(f"{name} is missing")
                continue
            entry: dict[str, Any] = {"shape": list(dataset.shape), "dtype": str(dataset.dtype)}
            if name.endswith("theta") and dataset.ndim == 1:
                angles = self.guarded(name, lambda: sample_series(dataset[()]))  # noqa: B023
                if angles is not None:
                    entry.update(angles)
                unit = _units(dataset)
                if unit:
                    entry["unit"] = unit
            summary[name.rpartition("/")[2]] = entry
        data, theta = summary.get("data"), summary.get("theta")
        if data and theta and data["shape"] and theta["shape"] and data["shape"][0] != theta["shape"][0]:
            self.warnings.append(
                f"{DATA} has {data['shape'][0]} projections but /exchange/theta has {theta['shape'][0]} angles"
            )
        return summary

    def creation_time(self, zone: tzinfo) -> datetime | None:
        start = self.text(START_DATE)
        if start is not None:
            moment = parse_datetime(start, zone)
            if moment is not None:
                return moment
            self.warnings.append(f"{START_DATE} {start!r} is not a date; trying {TIME_STAMP}")
        stamps = self.dataset(TIME_STAMP)
        if stamps is not None and stamps.size and stamps.dtype.kind in "iuf":
            first = self.guarded(TIME_STAMP, lambda: float(np.asarray(stamps[()]).reshape(-1)[0]))
            moment = epoch_to_datetime(first) if first is not None else None
            if moment is not None:
                return moment
            self.warnings.append(f"{TIME_STAMP} does not start with a date (got {first!r})")
        elif stamps is not None and stamps.size:
            first_text = self.guarded(TIME_STAMP, lambda: decode_text(np.asarray(stamps[()]).reshape(-1)[0]))
            moment = parse_datetime(first_text, zone) if first_text else None
            if moment is not None:
                return moment
        self.warnings.append("no acquisition time in the file; creation time unset (use the file's modification time)")
        return None

    def thumbnail(self) -> bytes | None:
        dataset = self.dataset(DATA)
        if dataset is None:
            return None  # already reported by exchange()
        if dataset.ndim < 2 or dataset.size == 0:
            self.warnings.append(f"{DATA} has shape {dataset.shape}; no thumbnail")
            return None
        projection = self.guarded(f"{DATA}[0]", lambda: dataset[0] if dataset.ndim >= 3 else dataset[()])
        if projection is None:
            return None
        # A projection is mostly sample, so the 7.3.3 clip (25th percentile) would blacken it; clip only the
        # extreme 0.1% at both ends, as the seed's 8.3.2 thumbnails did.
        result: bytes | None = self.guarded(
            f"a thumbnail of {DATA}[0]", lambda: thumbnail_png(projection, percentiles=THUMBNAIL_PERCENTILES)
        )
        return result


def _open(path: Path) -> h5py.File:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableScan(path, f"cannot read the file: {exc.strerror or exc}") from exc
    if size == 0:
        raise UnreadableScan(path, "the HDF5 file is empty (0 bytes)")
    try:
        signature_ok = h5py.is_hdf5(str(path))
    except OSError as exc:
        raise UnreadableScan(path, f"cannot read the file: {exc}") from exc
    if not signature_ok:
        raise UnreadableScan(path, "not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError) as exc:
        raise UnreadableScan(path, f"the HDF5 library cannot open it (truncated or damaged?): {exc}") from exc


def extract_832(files: list[Path], mapping: ProposalMapping | None = None) -> Extracted:
    """Catalogue fields for one 8.3.2 scan (a DX HDF5 file).

    ``mapping`` is optional here: the file names its PI and proposal; a mapping entry for the proposal
    overrides them and adds access groups, as for 7.3.3. Raises `UnreadableScan` when the scan has no HDF5
    file, or the file is empty, not HDF5, cannot be opened, or has none of the DX groups.
    """
    paths = sorted({Path(f) for f in files}, key=lambda p: (p.name, str(p)))
    candidates = [p for p in paths if p.suffix.lower() in HDF5_SUFFIXES]
    if not candidates:
        shown = ", ".join(p.name for p in paths) or "no files"
        raise UnreadableScan(
            paths[0] if paths else "<scan>",
            f"no HDF5 file among the scan's files ({shown})",
            "check that the beamline's extractor is the right one for these files",
        )
    path = candidates[0]
    warnings: list[str] = []
    if len(paths) > 1:
        warnings.append(f"several files in one 8.3.2 scan; read {path.name}, listed the others only")

    with _open(path) as handle:
        if not any(isinstance(handle.get(g), h5py.Group) for g in (*PARAMETER_ROOTS, "/exchange")):
            raise UnreadableScan(
                path,
                "an HDF5 file, but not in the DX layout (no /measurement, /process or /exchange group)",
                "check that the beamline's extractor is the right one for this file",
            )
        reader = _Reader(handle, path)
        pi = reader.text(PI)
        proposal = reader.text(PROPOSAL)
        beamline = reader.text(BEAMLINE)
        experimenter = reader.text(EXPERIMENTER)
        email_dataset = reader.dataset(EMAIL)
        email_raw = reader.guarded(EMAIL, lambda: decode_text(email_dataset[()])) if email_dataset else None
        email, problem = clean_email(email_raw)
        if problem and email_raw is not None:
            # Say what the file holds ("NONE", a typo): the operator fixes it at the beamline.
            reader.warnings.append(f"{EMAIL} holds {email_raw!r}: {problem}")
        instrument = reader.text(INSTRUMENT) or (f"ALS {beamline}" if beamline else None)
        if instrument is None:
            reader.warnings.append(f"{INSTRUMENT} and {BEAMLINE} are missing: instrument unset")
        file_name = reader.text(FILE_NAME)
        sample = reader.text(SAMPLE_NAME)
        groups, series, arrays = reader.parameters()
        exchange = reader.exchange()
        creation = reader.creation_time(mapping.zone() if mapping else ZoneInfo(DEFAULT_TIMEZONE))
        thumbnail = reader.thumbnail()
    warnings.extend(reader.warnings)

    owner: str | None = None  # Owner = PI, which resolve_ownership applies when no owner is given
    if pi is None and experimenter:
        owner = experimenter
        warnings.append(f"owner set to the experimenter {experimenter!r} because the file names no PI")
    ownership = resolve_ownership(
        proposal=proposal,
        pi=pi,
        owner=owner,
        owner_email=email,
        mapping=mapping,
        source="file",
        warnings=warnings,
        extra_access_groups=[beamline] if beamline else [],
    )

    metadata: dict[str, Any] = {
        "file": path.name,
        "parameters": groups,
        "data_sample": series,
        "exchange": exchange,
    }
    if arrays:
        metadata["arrays"] = arrays
    if len(paths) > 1:
        metadata["files"] = [p.name for p in paths]
    stem = path.stem
    names = [stem] if not file_name or Path(file_name).stem == stem else [stem, Path(file_name).stem]
    return Extracted(
        scientific_metadata=metadata,
        **ownership.model_dump(),
        sample=sample,
        dataset_name=stem,
        description=" ".join(search_terms(*names)),
        keywords=[*KEYWORDS, *search_terms(*names)],
        creation_time=creation,
        instrument=instrument,
        techniques=list(TECHNIQUES),
        data_format="DX",
        thumbnail_png=thumbnail,
        warnings=warnings,
    )
