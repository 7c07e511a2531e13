"""Detector simulator: writes realistic scan files for beamlines 7.3.3 (SAXS/WAXS) and 8.3.2 (micro-CT).

`beamflow demo`, the tests and the benchmarks need scan folders that look like the real ones without a
beamline attached; this module is the one place that writes them:

* 7.3.3 (`write_scan_733`): a ``.txt`` header, then an ESRF ``.edf`` image with the same stem. The header
  mixes ``key: value`` and ``key = value``, has a title line without delimiter, a ``Time: 12:30:01`` entry
  and an ``Acquired at 12:30:01`` line (colons that are not delimiters), numbers with units, and Windows
  line ends. The image (`beamflow.common.edf`, header padded to 512 bytes) is a synthetic SAXS pattern
  (`saxs_pattern`: form-factor decay, powder rings, beamstop shadow, module gaps, Poisson noise); frames of
  one scan share the one ``.edf`` file.
* 8.3.2 (`write_scan_832`): one HDF5 file in the DX layout: the catalogue strings as byte strings (the
  beamline with stray quotes and commas, as the beamline writes it), about 45 scalar parameters as
  1-element arrays with units, per-projection series, uint16 projections of a rotating phantom
  (`tomo_phantom`) with white and dark fields, and theta.

What is in a scan is drawn from the random generator the caller passes, so equal seeds give equal bytes.
The fields a catalogue cares about can be set instead: PI, proposal, owner, e-mail and experimenter take a
value (written as given, quotes and all), None (the field is left out, as in files that lack it) or
`DRAWN` (the default: a plausible value from the generator). Every draw happens whether or not its field
is overridden, so setting one field leaves the rest of the scan as it was. ``messy=True`` gives an 8.3.2
file the junk real catalogue strings carry (an e-mail that is "NONE" or a pasted ``'...',``);
``malformed=True`` gives either beamline what a damaged-but-readable file has (junk lines, missing or
NONE fields, wrong sizes, NaN), from which the extractors must still make a result, with warnings.

How the files reach the disk matters as much as what is in them, because the watcher triggers on inotify
events: every final file is produced by exactly one open/write/close (IN_CLOSE_WRITE on the final name), or,
with ``atomic=True``, by writing a hidden ``.<name>.tmp`` beside it and renaming it into place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any, Final, TypeAlias

import h5py
import numpy as np
import numpy.typing as npt
from beamflow.common.edf import BLOCK as EDF_BLOCK
from beamflow.common.edf import encode_edf

__all__ = [
    "DRAWN",
    "EDF_BLOCK",
    "DetectorSimulator",
    "Drawn",
    "Override",
    "SimulatedScan",
    "saxs_pattern",
    "tomo_phantom",
    "write_scan_733",
    "write_scan_832",
    "write_small",
]

PILATUS_PIXEL_M: Final = 172e-6

# Scan timestamps are drawn from the generator, never from the clock, so equal seeds give equal bytes.
_EPOCH_2026: Final = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
_NINETY_DAYS: Final = 90 * 86400

_PEOPLE: Final = (
    ("Ada Quill", "aquill"),
    ("Ben Okafor", "bokafor"),
    ("Chen Wei", "cwei"),
    ("Dana Ruiz", "druiz"),
    ("Emil Sorensen", "esorensen"),
)
_LEADS: Final = ("Dula Parkinson", "Alastair MacDowell", "Harold Barnard")


class Drawn(Enum):
    """The default of a writer's catalogue field: a plausible value drawn from the scan's generator."""

    DRAWN = "drawn"


DRAWN: Final = Drawn.DRAWN
#: A catalogue field of a writer: the text to write, None to leave the field out, or `DRAWN`.
Override: TypeAlias = str | Drawn | None


@dataclass
class SimulatedScan:
    beamline: str
    scan_path: str
    files: list[Path]
    closed_at: float


def _final_path(root: Path, scan_path: str, suffix: str) -> Path:
    rel = PurePosixPath(scan_path)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"scan_path must be relative and stay under root: {scan_path!r}")
    return root.joinpath(*rel.parts[:-1], rel.name + suffix)


def _temp_path(final: Path) -> Path:
    # Hidden and with a non-scan suffix, so a watcher's globs and dot-file rule both skip it.
    return final.with_name(f".{final.name}.tmp")


def _write_once(path: Path, data: bytes, atomic: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = _temp_path(path) if atomic else path
    # One open, one write, one close: the watcher must see a single IN_CLOSE_WRITE per file, not a file
    # that appears half-written and is closed several times.
    with target.open("wb") as fh:
        fh.write(data)
    if atomic:
        target.rename(path)


def write_scan_file(root: Path, scan_path: str, suffix: str, data: bytes) -> Path:
    """One file of a scan, written as a detector that renames does (a hidden temporary, then the final name),
    so a watcher sees it whole; ``scan_path`` must stay under ``root``. The flight check writes with it."""
    final = _final_path(root, scan_path, suffix)
    _write_once(final, data, atomic=True)
    return final


def _scan_start(rng: np.random.Generator) -> datetime:
    return datetime.fromtimestamp(_EPOCH_2026 + int(rng.integers(0, _NINETY_DAYS)), tz=UTC)


def _draw_people(rng: np.random.Generator) -> tuple[str, str, str, str]:
    """(operator's name, operator's user name, PI, proposal) for one scan."""
    name, user = _PEOPLE[int(rng.integers(len(_PEOPLE)))]
    pi = _PEOPLE[int(rng.integers(len(_PEOPLE)))][0]
    return name, user, pi, f"ALS-{int(rng.integers(10000, 13000))}"


def _given(value: Override, drawn: str) -> str | None:
    return drawn if isinstance(value, Drawn) else value


def _counts(mean: npt.NDArray[np.float64], rng: np.random.Generator, dtype: str = "uint16") -> npt.NDArray[Any]:
    """Poisson counts around ``mean``, clipped to the range of an integer ``dtype``."""
    counts = rng.poisson(mean).astype(np.float64)
    target = np.dtype(dtype)
    if target.kind in "iu":
        info = np.iinfo(target)
        counts = np.clip(counts, info.min, info.max)
    return counts.astype(target)


# --------------------------------------------------------------------------------------------- 7.3.3


def _beam_center(shape: tuple[int, int], rng: np.random.Generator) -> tuple[float, float]:
    rows, cols = shape
    # The direct beam is a little off-centre, as on the real detector.
    y = rows * float(rng.uniform(0.45, 0.6))
    x = cols * float(rng.uniform(0.4, 0.55))
    return x, y


def saxs_pattern(
    shape: tuple[int, int],
    rng: np.random.Generator,
    exposure: float = 1.0,
    *,
    center: tuple[float, float] | None = None,
) -> npt.NDArray[np.float64]:
    """Expected counts of a SAXS image: form-factor decay, powder rings, beamstop and module gaps.

    ``center`` is the direct beam (x, y) in pixels, drawn from ``rng`` when not given. Returns the mean
    (noise-free) image; draw Poisson counts from it for a detector frame.
    """
    rows, cols = shape
    cx, cy = center if center is not None else _beam_center(shape, rng)
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


def _txt_lines(entries: list[tuple[str, str, str | None]], extra: Mapping[str, str | None] | None) -> list[str]:
    """Header lines from (key, delimiter, value) entries; ``extra`` replaces, removes (None) or appends keys.

    An entry whose value is None is left out; one with the delimiter "" is a line that is not an entry.
    """
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
        if delim == "":
            lines.append(key)
        elif delim == "=":
            lines.append(f"{key} = {value}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def write_scan_733(
    root: Path,
    scan_path: str,
    rng: np.random.Generator,
    shape: tuple[int, int] = (128, 128),
    atomic: bool = False,
    *,
    proposal: Override = DRAWN,
    pi: Override = DRAWN,
    owner: Override = DRAWN,
    email: Override = DRAWN,
    sample: str | None = None,
    when: datetime | None = None,
    frames: int = 1,
    dtype: str = "uint16",
    byte_order: str = "LowByteFirst",
    extra_header: Mapping[str, str | None] | None = None,
    extra_edf_header: Mapping[str, str] | None = None,
    malformed: bool = False,
) -> list[Path]:
    """Write `<scan_path>.txt` then `<scan_path>.edf`; return both final paths in write order.

    ``proposal``, ``pi``, ``owner`` and ``email`` are written as given, left out when None, drawn when
    `DRAWN`. ``sample`` defaults to the scan's name, ``when`` (the local time written into both headers)
    to a drawn time. ``frames`` > 1 writes several frames into the one ``.edf`` file, as pixels of
    ``dtype`` in ``byte_order``. ``extra_header`` edits the ``.txt`` entries by key (a value replaces or
    appends, None removes); ``extra_edf_header`` adds or replaces free EDF keys.
    """
    if frames < 1:
        raise ValueError("frames must be at least 1")
    txt = _final_path(root, scan_path, ".txt")
    edf = _final_path(root, scan_path, ".edf")
    rows, cols = shape
    _, user, drawn_pi, drawn_proposal = _draw_people(rng)
    drawn_start = _scan_start(rng)
    start = when if when is not None else drawn_start
    sample = sample if sample is not None else PurePosixPath(scan_path).name
    energy_ev = float(rng.choice([10000.0, 11900.0, 12400.0]))
    wavelength_a = 12398.419843 / energy_ev
    exposure = float(rng.choice([0.5, 1.0, 2.0, 5.0]))
    distance_mm = float(rng.uniform(260.0, 3600.0))
    center = _beam_center(shape, rng)

    # The mix of ':' and '=' and the odd lines (no delimiter; a time of day with several colons) are what
    # the real header looks like; parsers that split on the first delimiter only have to cope.
    entries: list[tuple[str, str, str | None]] = [
        ("ALS Beamline 7.3.3 SAXS/WAXS/GISAXS", "", ""),
        ("Sample Name", ":", sample),
        ("Owner", ":", _given(owner, user)),
        ("PI", ":", _given(pi, drawn_pi)),
        ("Email", ":", _given(email, f"{user}@lbl.gov")),
        ("Proposal", "=", _given(proposal, drawn_proposal)),
        ("Date", ":", f"{start:%Y-%m-%d}"),
        ("Time", ":", f"{start:%H:%M:%S}"),
        (f"Acquired at {start:%H:%M:%S}", "", ""),
        ("Exposure time", ":", f"{exposure:.3f} s"),
        ("Energy", "=", f"{energy_ev:.1f}"),
        ("Wavelength", "=", f"{wavelength_a:.6f}"),
        ("Sample-Detector Distance", ":", f"{distance_mm:.2f} mm"),
        ("Beam Center X", ":", f"{center[0]:.2f}"),
        ("Beam Center Y", ":", f"{center[1]:.2f}"),
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
    txt_bytes = ("\r\n".join(lines) + "\r\n").encode("utf-8")  # the control PC is Windows
    if malformed:
        txt_bytes += b"\x00\x01\x02garbage\xff\xfe\r\nTemperature: 25 \xb0C\r\n"

    images = [
        _counts(saxs_pattern(shape, rng, exposure * (1 + 0.1 * k), center=center), rng, dtype) for k in range(frames)
    ]
    edf_header = {
        "Title": sample,
        "ExposureTime": f"{exposure:.3f}",
        "Center_1": f"{center[0]:.2f}",
        "Center_2": f"{center[1]:.2f}",
        "PSize_1": f"{PILATUS_PIXEL_M:g}",
        "PSize_2": f"{PILATUS_PIXEL_M:g}",
        "SampleDistance": f"{distance_mm / 1000:.5f}",
        "WaveLength": f"{wavelength_a * 1e-10:.6e}",
        "Date": f"{start:%Y-%m-%dT%H:%M:%S}",
        "Detector": "PILATUS 2M",
        **(extra_edf_header or {}),
    }
    edf_bytes = encode_edf(images, edf_header, byte_order=byte_order, pad=not malformed)
    if malformed:
        # A header entry without '=' and a Size that disagrees with the dimensions, as old writers left them.
        size = str(rows * cols * np.dtype(dtype).itemsize).encode()
        edf_bytes = edf_bytes.replace(b"Size = " + size + b" ;", b"Size = 12 ;\nstray entry ;", 1)

    # The header goes first because the real acquisition writes it first; a watcher that keys on the image
    # may therefore rely on the header already being there.
    _write_once(txt, txt_bytes, atomic)
    _write_once(edf, edf_bytes, atomic)
    return [txt, edf]


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


def write_scan_832(
    root: Path,
    scan_path: str,
    rng: np.random.Generator,
    projections: int = 8,
    shape: tuple[int, int] = (64, 64),
    atomic: bool = False,
    messy: bool = False,
    *,
    pi: Override = DRAWN,
    proposal: Override = DRAWN,
    email: Override = DRAWN,
    experimenter: Override = DRAWN,
    sample: str | None = None,
    when: datetime | None = None,
    malformed: bool = False,
) -> Path:
    """Write `<scan_path>.h5` in the DX layout; with ``messy`` the catalog strings carry real-world junk.

    ``pi``, ``proposal``, ``email`` and ``experimenter`` (the operator's name) are written as given, left
    out when None, drawn when `DRAWN`. ``sample`` defaults to the scan's name; ``when`` (aware) is the
    acquisition start, in ``/process/acquisition/start_date`` and the time stamps, drawn when not given.
    """
    if projections < 1:
        raise ValueError("projections must be at least 1")
    final = _final_path(root, scan_path, ".h5")
    temp = _temp_path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = shape
    n_white, n_dark = 2, 2
    name, user, drawn_pi, drawn_proposal = _draw_people(rng)
    lead = _LEADS[int(rng.integers(len(_LEADS)))]
    drawn_start = _scan_start(rng)
    start = when if when is not None else drawn_start
    exposure = float(rng.choice([0.05, 0.1, 0.2]))
    energy = float(rng.choice([18.0, 24.0, 30.0]))
    theta = np.linspace(0.0, 180.0, projections, endpoint=False)
    pi_text = _given(pi, drawn_pi)
    proposal_text = _given(proposal, drawn_proposal)
    email_text = _given(email, f"{user}@lbl.gov")
    if messy:
        # The two forms seen in production: a pasted Python repr fragment, and an unset field.
        if email_text is not None:
            email_text = "NONE" if rng.random() < 0.5 else f"'{email_text}',"
        lead = f"'{lead}'"
    if malformed:
        pi_text = None if pi_text is None else f" '{pi_text}', "
        proposal_text = None
        email_text = None if email_text is None else "NONE"
        lead = ""

    with h5py.File(temp, "w") as f:
        f.attrs["implements"] = b"exchange:measurement:process"
        sample_group = f.create_group("measurement/sample")
        _put(sample_group, "file_name", final.name)
        _put(sample_group, "name", sample if sample is not None else PurePosixPath(scan_path).name)
        experiment = sample_group.create_group("experiment")
        if pi_text is not None:
            _put(experiment, "pi", pi_text)
        if proposal_text is not None:
            _put(experiment, "proposal", proposal_text)
        _put(experiment, "beamline", " '8.3.2', ", scalar=True)
        _put(experiment, "experiment_lead", lead)
        experimenter_group = sample_group.create_group("experimenter")
        if email_text is not None:
            _put(experimenter_group, "email", email_text)
        experimenter_name = _given(experimenter, name)
        if experimenter_name is not None:
            _put(experimenter_group, "name", experimenter_name)

        instrument = f.create_group("measurement/instrument")
        if not malformed:
            _put(instrument, "instrument_name", "ALS 8.3.2 micro-tomography", scalar=True)
        _scalars(f, rows, cols, projections, n_white, n_dark, rng, malformed)
        _put(f["process/acquisition"], "start_date", "sometime" if malformed else start.isoformat())
        _series(f, projections, start, exposure, energy, rng, malformed)

        # The beam profile is brighter in the middle rows and has a slight horizontal ripple, so flat-field
        # correction changes the result as it does with real data.
        flat = 20000.0 * np.exp(-0.5 * ((np.arange(rows) - rows / 2) / (0.6 * rows)) ** 2)[:, None]
        flat = flat * (1.0 + 0.03 * np.sin(np.arange(cols) / 3.0))[None, :]
        dark_level = 100.0
        exchange = f.create_group("exchange")
        data = exchange.create_dataset("data", shape=(projections, rows, cols), dtype=np.uint16)
        # One projection at a time keeps memory flat for full-size (2160 x 2560) benchmark files.
        for i in range(projections):
            path_len = tomo_phantom(theta[i : i + 1], shape)[0]
            data[i] = _counts(flat * np.exp(-path_len) + dark_level, rng)
        white = np.broadcast_to(flat + dark_level, (n_white, rows, cols))
        exchange.create_dataset("data_white", data=_counts(np.asarray(white), rng))
        exchange.create_dataset("data_dark", data=_counts(np.full((n_dark, rows, cols), dark_level), rng))
        kept = theta[:-1] if malformed and projections > 1 else theta
        exchange.create_dataset("theta", data=kept).attrs["units"] = b"deg"

    if atomic:
        temp.rename(final)
    else:
        # h5py opens, seeks and closes on its own schedule; copying the finished bytes gives the final name
        # exactly one IN_CLOSE_WRITE, like a detector that writes in one go.
        _write_once(final, temp.read_bytes(), atomic=False)
        temp.unlink()
    return final


def _scalars(
    f: h5py.File,
    rows: int,
    cols: int,
    angles: int,
    n_white: int,
    n_dark: int,
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


# ----------------------------------------------------------------------------------------- helpers


def write_small(root: Path, relpath: str, payload: bytes) -> float:
    """Write one file with a single open/write/close and return the time it was closed."""
    path = root / relpath
    try:
        fh = path.open("wb")
    except FileNotFoundError:
        # Benchmarks write thousands of files into few folders: mkdir only on a miss saves a syscall each.
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("wb")
    with fh:
        fh.write(payload)
    return time.time()


class DetectorSimulator:
    """Numbered scans for both beamlines; each scan's content depends only on (seed, beamline, index)."""

    def __init__(
        self,
        root733: Path | None,
        root832: Path | None,
        seed: int = 0,
        *,
        shape733: tuple[int, int] = (128, 128),
        shape832: tuple[int, int] = (64, 64),
        projections: int = 8,
        atomic: bool = False,
        name733: str = "bl733",
        name832: str = "bl832",
    ) -> None:
        # The names are the beamlines' keys in the configuration, which SimulatedScan.beamline carries.
        self.name733 = name733
        self.name832 = name832
        self.root733 = root733
        self.root832 = root832
        self.seed = seed
        self.shape733 = shape733
        self.shape832 = shape832
        self.projections = projections
        self.atomic = atomic

    def _rng(self, beamline: int, index: int, restricted: bool = False) -> np.random.Generator:
        # Seeding per scan rather than sharing one stream keeps scan N identical however many scans were
        # written before it, so a test can regenerate one scan and compare bytes.
        return np.random.default_rng([self.seed, beamline, index, int(restricted)])

    def scan_733(self, index: int, folder: str = "2026/demo") -> SimulatedScan:
        if self.root733 is None:
            raise ValueError("DetectorSimulator has no 7.3.3 root")
        scan_path = f"{folder.strip('/')}/sample_{index:04d}"
        files = write_scan_733(self.root733, scan_path, self._rng(733, index), self.shape733, self.atomic)
        return SimulatedScan(self.name733, scan_path, files, time.time())

    def scan_832(
        self, index: int, folder: str = "2026/demo", restricted: bool = False, messy: bool = False
    ) -> SimulatedScan:
        if self.root832 is None:
            raise ValueError("DetectorSimulator has no 8.3.2 root")
        scan_path = f"{folder.strip('/')}/tomo_{index:04d}"
        if restricted:
            scan_path = f"restricted/{scan_path}"
        path = write_scan_832(
            self.root832,
            scan_path,
            self._rng(832, index, restricted),
            projections=self.projections,
            shape=self.shape832,
            atomic=self.atomic,
            messy=messy,
        )
        return SimulatedScan(self.name832, scan_path, [path], time.time())
