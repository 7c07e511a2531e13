"""Realistic scan files for tests, the demo and benchmarks: 7.3.3 ``.txt`` + ``.edf`` and 8.3.2 DX HDF5.

The files carry what production files carry, quirks included, so that the extractors are tested against
the mess they will meet:

* 7.3.3: a ``.txt`` header mixing ``key: value`` and ``key = value``, a title line without delimiter, a
  ``Time: 12:30:01`` entry and an ``Acquired at 12:30:01`` line (colons that are not delimiters), numbers
  with units; an EDF image (header padded to 512 bytes, uint16 pixels) of a synthetic SAXS pattern (form
  factor decay, powder rings, beamstop shadow, detector module gaps, Poisson noise). Frames of one scan
  share one ``.edf`` file (one header block per frame), because 7.3.3 groups a scan's files by stem.
* 8.3.2: a DX file with the catalogue strings as byte strings (the e-mail and beamline with stray quotes
  and commas, as the beamline writes them), about 45 scalar parameters as 1-element arrays with units,
  per-projection series, uint16 projections of an ellipsoid phantom with white and dark fields, and theta.

``malformed=True`` adds what a damaged-but-readable file has (junk lines, missing or NONE fields, wrong
sizes, NaN); the extractors must still return a result, with warnings. Output is deterministic: the
random generator is seeded from the name unless ``seed`` is given. Defaults are small so tests stay fast.
"""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import h5py
import numpy as np
import numpy.typing as npt

from .edf import EDF_NAMES, encode_edf

__all__ = ["saxs_pattern", "tomo_phantom", "write_733_scan", "write_832_scan", "write_edf"]

#: When the synthetic scans were "taken" unless told otherwise (beamline local time for 7.3.3).
DEFAULT_WHEN: Final = datetime(2026, 3, 14, 12, 30, 1)
PILATUS_PIXEL_M: Final = 172e-6


def _rng(name: str, seed: int | None) -> np.random.Generator:
    return np.random.default_rng(seed if seed is not None else zlib.crc32(name.encode()))


# --------------------------------------------------------------------------------------------- 7.3.3


def saxs_pattern(shape: tuple[int, int], rng: np.random.Generator, exposure: float = 1.0) -> npt.NDArray[np.float64]:
    """Expected counts of a SAXS image: form-factor decay, powder rings, beamstop and module gaps.

    Returns the mean (noise-free) image; draw Poisson counts from it for a detector frame.
    """
    rows, cols = shape
    # The direct beam is off-centre, as on the real detector (the SAXS pattern sits near one corner).
    cy = rows * float(rng.uniform(0.45, 0.6))
    cx = cols * float(rng.uniform(0.4, 0.55))
    y, x = np.ogrid[0:rows, 0:cols]
    dy, dx = y - cy, x - cx
    r = np.sqrt(dy * dy + dx * dx)
    scale = float(min(rows, cols))
    # A sphere-like form factor (Guinier knee, then Porod-like q^-4 fall-off) over a flat background.
    knee = 0.05 * scale
    mean = 5.0e4 / (1.0 + (r / knee) ** 4) + 8.0
    # Powder rings at 1, 2 and 3 times a first-ring radius (a lamellar calibrant), a little anisotropic.
    first = scale * float(rng.uniform(0.12, 0.16))
    phi = np.arctan2(dy, dx)
    anisotropy = 1.0 + 0.3 * np.cos(2.0 * (phi - float(rng.uniform(0.0, math.pi))))
    width = 0.006 * scale + 0.6
    for order, amplitude in ((1, 900.0), (2, 300.0), (3, 90.0)):
        mean = mean + amplitude * anisotropy * np.exp(-0.5 * ((r - order * first) / width) ** 2)
    mean = mean * exposure
    # The beamstop (a disc on an arm reaching the top edge) shadows the direct beam.
    stop = max(2.0, 0.035 * scale)
    shadow = (r < stop) | ((np.abs(dx) < stop * 0.35) & (y < cy))
    mean = np.where(shadow, 0.5, mean)
    # Pilatus modules leave dead rows and columns between them (17 and 7 pixels on the 2M; scaled here).
    gap_rows = max(1, rows // 60)
    gap_cols = max(1, cols // 120)
    for k in range(1, 4):
        mean[k * rows // 4 : k * rows // 4 + gap_rows, :] = 0.0
    for k in range(1, 3):
        mean[:, k * cols // 3 : k * cols // 3 + gap_cols] = 0.0
    return np.asarray(mean, dtype=np.float64)


def _counts(mean: npt.NDArray[np.float64], rng: np.random.Generator, dtype: str) -> npt.NDArray[Any]:
    counts = rng.poisson(mean).astype(np.float64)
    target = np.dtype(dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        counts = np.clip(counts, info.min, info.max)
    return counts.astype(target)


def write_edf(
    path: Path,
    frames: list[npt.NDArray[Any]],
    header: dict[str, str] | None = None,
    *,
    byte_order: str = "LowByteFirst",
    pad: bool = True,
) -> Path:
    """Write ``frames`` as an EDF file (one header block per frame); see `encode_edf`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_edf(frames, header, byte_order=byte_order, pad=pad))
    return path


def _txt_lines(entries: list[tuple[str, str, str | None]], extra: dict[str, str | None] | None) -> list[str]:
    """Header lines from (key, delimiter, value) entries; ``extra`` replaces, removes (None) or appends keys."""
    rows = list(entries)
    for key, value in (extra or {}).items():
        for i, (k, delim, _old) in enumerate(rows):
            if k == key:
                rows[i] = (k, delim, value)
                break
        else:
            rows.append((key, ":", value))
    lines = []
    for key, delim, value in rows:
        if value is None:
            continue
        if delim == "":  # a line that is not an entry
            lines.append(key)
        elif delim == "=":
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def write_733_scan(
    folder: Path,
    stem: str,
    *,
    proposal: str | None,
    pi: str | None,
    frames: int = 1,
    shape: tuple[int, int] = (256, 256),
    extra_header: dict[str, str | None] | None = None,
    malformed: bool = False,
    owner: str | None = "sbeamline",
    email: str | None = "sbeamline@example.org",
    sample: str | None = None,
    when: datetime = DEFAULT_WHEN,
    seed: int | None = None,
    dtype: str = "uint16",
    byte_order: str = "LowByteFirst",
    extra_edf_header: dict[str, str] | None = None,
) -> list[Path]:
    """Write ``<stem>.txt`` then ``<stem>.edf`` in ``folder``; return [txt, edf].

    ``proposal``, ``pi``, ``owner``, ``email`` set to None leave their header line out. ``extra_header``
    edits the ``.txt`` entries by key (a value replaces or appends, None removes); ``extra_edf_header`` adds
    free EDF keys. ``frames`` > 1 writes several header blocks into the one ``.edf`` file. ``when`` is the
    naive local time written into both headers.
    """
    if frames < 1:
        raise ValueError("frames must be at least 1")
    if dtype not in EDF_NAMES:
        raise ValueError(f"dtype must be one of {sorted(EDF_NAMES)}")
    folder.mkdir(parents=True, exist_ok=True)
    rng = _rng(stem, seed)
    rows, cols = shape
    sample = sample or stem
    energy_ev = float(rng.choice([10000.0, 11900.0, 12400.0]))
    wavelength_a = 12398.419843 / energy_ev
    exposure = float(rng.choice([0.5, 1.0, 2.0]))
    distance_mm = float(rng.uniform(260.0, 3600.0))

    entries: list[tuple[str, str, str | None]] = [
        ("ALS Beamline 7.3.3 SAXS/WAXS/GISAXS", "", ""),
        ("Sample Name", ":", sample),
        ("Owner", ":", owner),
        ("PI", ":", pi),
        ("Email", ":", email),
        ("Proposal", "=", proposal),
        ("Date", ":", f"{when:%Y-%m-%d}"),
        ("Time", ":", f"{when:%H:%M:%S}"),
        (f"Acquired at {when:%H:%M:%S}", "", ""),
        ("Exposure time", ":", f"{exposure:.3f} s"),
        ("Energy", "=", f"{energy_ev:.1f} eV"),
        ("Wavelength", "=", f"{wavelength_a:.6f}"),
        ("Sample-Detector Distance", ":", f"{distance_mm:.2f} mm"),
        ("Beam Center X", ":", f"{cols * 0.5:.2f}"),
        ("Beam Center Y", ":", f"{rows * 0.5:.2f}"),
        ("Sample X Stage", "=", f"{float(rng.uniform(-5, 5)):.4f}"),
        ("Sample Y Stage", "=", f"{float(rng.uniform(-5, 5)):.4f}"),
        ("Sample Thickness", ":", f"{float(rng.uniform(0.5, 2.0)):.3f} mm"),
        ("I0 Beamstop", ":", f"{float(rng.uniform(0.8, 1.2)):.5f}"),
        ("Izero AI", ":", f"{float(rng.uniform(0.8, 1.2)):.5f}"),
        ("Detector", ":", "Pilatus 2M"),
        ("Scan Number", ":", f"{int(rng.integers(1, 999)):05d}"),
        ("Geometry", ":", "transmission"),
    ]
    lines = _txt_lines(entries, extra_header)
    if malformed:
        lines = [line for line in lines if not line.startswith("Time")]
        lines = [("Date: sometime last week" if line.startswith("Date") else line) for line in lines]
        lines += [
            ":::",
            "= orphan value",
            "Detector: Pilatus 300k WAXS",  # the same key again
            "Exposure time: NaN",  # and again, not a number
            "x" * 300 + ": a key too long to be a key",
        ]
    text = "\r\n".join(lines) + "\r\n"  # the control PC is Windows
    txt_bytes = text.encode("utf-8")
    if malformed:
        txt_bytes += b"\x00\x01\x02garbage\xff\xfe\r\nTemperature: 25 \xb0C\r\n"

    images = [_counts(saxs_pattern(shape, rng, exposure * (1 + 0.1 * k)), rng, dtype) for k in range(frames)]
    header = {
        "Title": sample,
        "ExposureTime": f"{exposure:.3f}",
        "Center_1": f"{cols * 0.5:.2f}",
        "Center_2": f"{rows * 0.5:.2f}",
        "PSize_1": f"{PILATUS_PIXEL_M:g}",
        "PSize_2": f"{PILATUS_PIXEL_M:g}",
        "SampleDistance": f"{distance_mm / 1000:.5f}",
        "WaveLength": f"{wavelength_a * 1e-10:.6e}",
        "Date": f"{when:%Y-%m-%dT%H:%M:%S}",
        "Detector": "PILATUS 2M",
        **(extra_edf_header or {}),
    }
    edf_bytes = encode_edf(images, header, byte_order=byte_order, pad=not malformed)
    if malformed:
        # A header entry without '=' and a Size that disagrees with the dimensions, as old writers left them.
        rows_s = str(rows * cols * np.dtype(dtype).itemsize).encode()
        edf_bytes = edf_bytes.replace(b"Size = " + rows_s + b" ;", b"Size = 12 ;\nstray entry ;", 1)

    txt_path = folder / f"{stem}.txt"
    edf_path = folder / f"{stem}.edf"
    # Header first: the acquisition writes it first, and a watcher keyed on the image may rely on that.
    txt_path.write_bytes(txt_bytes)
    edf_path.write_bytes(edf_bytes)
    return [txt_path, edf_path]


# --------------------------------------------------------------------------------------------- 8.3.2

# Phantom ellipsoids: centre (x, y as fractions of the half-width; z as a fraction of the height),
# semi-axes (a, b as fractions of the half-width; c of the height), in-plane rotation, and attenuation per
# half-width of path, so that the transmission (about 25% through the middle) does not depend on the size.
_ELLIPSOIDS: Final = (
    (0.0, 0.0, 0.5, 0.62, 0.48, 0.45, 0.0, 1.1),
    (0.18, 0.05, 0.45, 0.16, 0.26, 0.25, 0.5, 1.5),
    (-0.22, -0.10, 0.55, 0.12, 0.10, 0.20, 1.2, 2.5),
    (0.05, 0.30, 0.40, 0.06, 0.06, 0.10, 0.0, 5.0),
    (-0.30, 0.25, 0.62, 0.05, 0.09, 0.08, 2.0, -0.4),
)


def tomo_phantom(theta_deg: npt.NDArray[np.float64], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Line integrals (angles x rows x cols) of a phantom of ellipsoids rotating about the vertical axis.

    Each ellipsoid's projection is analytic: at angle theta a slice of an ellipse with semi-axes (a, b)
    rotated by phi projects to 2ab/s^2 * sqrt(s^2 - (t - t0)^2), with s^2 = (a cos(theta - phi))^2 +
    (b sin(theta - phi))^2 and t0 the centre's projection; an ellipsoid slice at height z scales the
    ellipse by k = sqrt(1 - ((z - z0)/c)^2), which turns s^2 into k^2 s^2 and leaves 2ab/s^2 unchanged.
    """
    rows, cols = shape
    half = cols / 2.0
    theta = np.deg2rad(np.asarray(theta_deg, dtype=np.float64))[:, None, None]
    t = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2.0)[None, None, :]
    z = np.arange(rows, dtype=np.float32)[None, :, None]
    total = np.zeros((theta.shape[0], rows, cols), dtype=np.float32)
    for x0, y0, z0, a, b, c, phi, mu in _ELLIPSOIDS:
        a_px, b_px, c_px = a * half, b * half, c * rows
        s2 = (a_px * np.cos(theta - phi)) ** 2 + (b_px * np.sin(theta - phi)) ** 2
        t0 = x0 * half * np.cos(theta) + y0 * half * np.sin(theta)
        k2 = np.clip(1.0 - ((z - z0 * rows) / c_px) ** 2, 0.0, None).astype(np.float32)
        chord2 = k2 * s2.astype(np.float32) - (t - t0.astype(np.float32)) ** 2
        np.clip(chord2, 0.0, None, out=chord2)
        np.sqrt(chord2, out=chord2)
        chord2 *= (2.0 * a_px * b_px / s2).astype(np.float32) * np.float32(mu / half)
        total += chord2
    return total


def _put(group: h5py.Group, name: str, value: Any, unit: str | None = None, *, scalar: bool = False) -> None:
    # DX keeps scalars as 1-element arrays, and a few as true scalars; strings as fixed-length bytes.
    if isinstance(value, str):
        value = value.encode()
    data = np.bytes_(value) if isinstance(value, bytes) and scalar else value if scalar else np.array([value])
    dataset = group.create_dataset(name, data=data)
    if unit:
        dataset.attrs["units"] = unit.encode()


def write_832_scan(
    path: Path,
    *,
    pi: str | None,
    proposal: str | None,
    email: str | None = "experimenter@example.org",
    angles: int = 16,
    shape: tuple[int, int] = (128, 160),
    malformed: bool = False,
    experimenter: str = "Sam Experimenter",
    sample: str | None = None,
    when: datetime | None = None,
    seed: int | None = None,
) -> Path:
    """Write a DX HDF5 file at ``path`` (parents created) and return ``path``.

    ``pi``/``proposal``/``email`` None leave the dataset out. The e-mail and beamline are stored with
    stray quotes and commas, as the beamline writes them. ``when`` (aware; default 2026-03-14 19:30:01 UTC)
    is the acquisition start, in ``/process/acquisition/start_date`` and the time stamps.
    """
    if angles < 1:
        raise ValueError("angles must be at least 1")
    rng = _rng(path.name, seed)
    rows, cols = shape
    start = when or datetime(2026, 3, 14, 19, 30, 1, tzinfo=UTC)
    n_white, n_dark = 2, 2
    exposure = float(rng.choice([0.05, 0.1, 0.2]))
    energy = float(rng.choice([18.0, 24.0, 30.0]))
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["implements"] = b"exchange:measurement:process"
        sample_group = f.create_group("measurement/sample")
        _put(sample_group, "file_name", path.name)
        _put(sample_group, "name", sample or path.stem)
        experiment = sample_group.create_group("experiment")
        if pi is not None:
            _put(experiment, "pi", f" '{pi}', " if malformed else pi)
        if proposal is not None and not malformed:
            _put(experiment, "proposal", proposal)
        _put(experiment, "beamline", " '8.3.2', ", scalar=True)
        _put(experiment, "experiment_lead", "" if malformed else "Dula Parkinson")
        experimenter_group = sample_group.create_group("experimenter")
        if email is not None:
            _put(experimenter_group, "email", "NONE" if malformed else f" '{email}', ")
        _put(experimenter_group, "name", experimenter)

        instrument = f.create_group("measurement/instrument")
        if not malformed:
            _put(instrument, "instrument_name", "ALS 8.3.2 micro-tomography", scalar=True)
        _scalars(f, rows, cols, angles, n_white, n_dark, exposure, energy, rng, malformed)
        acquisition = f["process/acquisition"]
        _put(acquisition, "start_date", "sometime" if malformed else start.isoformat())
        _series(f, angles, start, exposure, energy, rng, malformed)

        flat = 20000.0 * np.exp(-0.5 * ((np.arange(rows) - rows / 2) / (0.6 * rows)) ** 2)[:, None]
        flat = flat * (1.0 + 0.03 * np.sin(np.arange(cols) / 3.0))[None, :]
        dark_level = 100.0
        exchange = f.create_group("exchange")
        projections = exchange.create_dataset("data", shape=(angles, rows, cols), dtype=np.uint16)
        # One projection at a time keeps memory flat for full-size (2160 x 2560) benchmark files.
        for i in range(angles):
            path_len = tomo_phantom(theta[i : i + 1], shape)[0]
            projections[i] = _counts(flat * np.exp(-path_len) + dark_level, rng, "uint16")
        white = np.broadcast_to(flat + dark_level, (n_white, rows, cols))
        exchange.create_dataset("data_white", data=_counts(np.asarray(white), rng, "uint16"))
        exchange.create_dataset("data_dark", data=_counts(np.full((n_dark, rows, cols), dark_level), rng, "uint16"))
        kept = theta[:-1] if malformed and angles > 1 else theta
        exchange.create_dataset("theta", data=kept).attrs["units"] = b"deg"
    return path


def _scalars(
    f: h5py.File,
    rows: int,
    cols: int,
    angles: int,
    n_white: int,
    n_dark: int,
    exposure: float,
    energy: float,
    rng: np.random.Generator,
    malformed: bool,
) -> None:
    """The ~45 scalar parameters of a DX file, as the 8.3.2 acquisition software records them."""
    u = rng.uniform
    instrument: dict[str, list[tuple[str, Any, str | None]]] = {
        "attenuator/setup": [("filter_y", round(float(u(0, 30)), 3), "mm")],
        "camera_motor_stack/setup": [("tilt_motor", round(float(u(-0.5, 0.5)), 4), "deg")],
        "detection_system/objective": [("camera_objective", 5.0, None)],
        "detection_system/scintillator": [("scintillator_type", "LuAG_20um", None)],
        "detector": [
            ("manufacturer", "PCO", None),
            ("model", "PCO.edge 5.5", None),
            ("binning_x", 1, None),
            ("binning_y", 1, None),
            ("dark_field_value", 100.0, None),
            ("delay_time", 0.02, "s"),
            ("dimension_x", cols, "pixels"),
            ("dimension_y", rows, "pixels"),
            ("pixel_size", 0.65, "um"),
            ("temperature", float("nan") if malformed else round(float(u(4.5, 5.5)), 2), "C"),
        ],
        "monochromator/setup": [
            ("Z2", round(float(u(15, 20)), 3), "mm"),
            ("temperature_tc2", round(float(u(22, 25)), 2), "C"),
            ("temperature_tc3", round(float(u(22, 25)), 2), "C"),
        ],
        "monochromator": [("type", "multilayer", None)],
        "slits/setup": [
            ("hslits_A_Door", 2.5, "mm"),
            ("hslits_A_Wall", 2.5, "mm"),
            ("hslits_center", 0.0, "mm"),
            ("hslits_size", 5.0, "mm"),
            ("vslits_Lead_Flag", 1.2, "mm"),
        ],
        "source": [("source_name", "ALS", None), ("beamline", "8.3.2", None), ("mode", "top-off", None)],
    }
    process: dict[str, list[tuple[str, Any, str | None]]] = {
        "dark_fields": [("dark_num_avg_of", 10, None), ("num_dark_fields", n_dark, None)],
        "flat_fields": [
            ("i0_move_x", 0.0, "mm"),
            ("i0_move_y", 30.0, "mm"),
            ("i0cycle", 0, None),
            ("num_flat_fields", n_white, None),
            ("usebrightexpose", 0, None),
        ],
        "mosaic": [
            (f"tile_{axis}{name}", value, unit)
            for axis in "xy"
            for name, value, unit in (
                ("movedist", 0.0, "mm"),
                ("numimg", 1, None),
                ("orig", 0.0, "mm"),
                ("overlap", 0.0, "mm"),
            )
        ],
        "rotation": [
            ("blur_limit", 0.1, None),
            ("multiRev", 0, None),
            ("nhalfCir", 1, None),
            # Old files store some numbers as text; the extractor keeps them as written.
            ("num_angles", str(angles) if malformed else angles, None),
            ("range", 180.0, "deg"),
        ],
        "": [("name", "acquisition", None), ("exposure_mode", "continuous", None)],
    }
    for base, table in (("measurement/instrument", instrument), ("process/acquisition", process)):
        for group_name, items in table.items():
            group = f.require_group(f"{base}/{group_name}" if group_name else base)
            for name, value, unit in items:
                _put(group, name, value, unit)
    _ = exposure, energy  # recorded per projection by _series


def _series(
    f: h5py.File,
    angles: int,
    start: datetime,
    exposure: float,
    energy: float,
    rng: np.random.Generator,
    malformed: bool,
) -> None:
    """Per-projection readings: ring current, energy, exposure, time stamps and motor positions."""
    n = np.arange(angles, dtype=np.float64)
    table: list[tuple[str, npt.NDArray[np.float64], str]] = [
        ("source/current", 500.0 - 0.01 * n + rng.normal(0.0, 0.05, angles), "mA"),
        ("source/beam_intensity_incident", 1.0 + rng.normal(0.0, 0.002, angles), "a.u."),
        ("monochromator/energy", np.full(angles, energy), "keV"),
        ("monochromator/setup/turret1", np.full(angles, 12.5), "deg"),
        ("monochromator/setup/turret2", np.full(angles, -12.5), "deg"),
        ("detector/exposure_time", np.full(angles, exposure), "s"),
        ("sample_motor_stack/setup/axis1pos", np.linspace(0.0, 180.0, angles, endpoint=False), "deg"),
        ("sample_motor_stack/setup/axis2pos", np.full(angles, 1.25), "mm"),
        ("sample_motor_stack/setup/sample_x", np.full(angles, -0.4), "mm"),
        ("sample_motor_stack/setup/axis5pos", np.full(angles, 0.0), "mm"),
        ("camera_motor_stack/setup/camera_elevation", np.full(angles, 10.0), "mm"),
        ("camera_motor_stack/setup/camera_distance", np.full(angles, 60.0), "mm"),
    ]
    if not malformed:
        table.append(("time_stamp", start.timestamp() + n * (exposure + 0.02), "s"))
    instrument = f["measurement/instrument"]
    for name, values, unit in table:
        instrument.create_dataset(name, data=values).attrs["units"] = unit.encode()
