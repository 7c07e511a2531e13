"""Detector simulator: writes realistic scan files for beamlines 7.3.3 (SAXS/WAXS) and 8.3.2 (micro-CT).

`beamflow demo`, the tests and the benchmarks need scan folders that look like the real ones without a
beamline attached: a 7.3.3 scan is a key/value `.txt` header followed by an ESRF `.edf` image with the same
stem; an 8.3.2 scan is one HDF5 file in the DX layout. The content is plausible (a SAXS ring, a rotating
phantom) and deterministic for a given random generator, so tests can compare bytes and extractors see the
same quirks as in production (delimiter-free lines, times of day with several colons, byte strings with
stray quotes or "NONE").

How the files reach the disk matters as much as what is in them, because the watcher triggers on inotify
events: every final file is produced by exactly one open/write/close (IN_CLOSE_WRITE on the final name), or,
with ``atomic=True``, by writing a hidden ``.<name>.tmp`` beside it and renaming it into place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Final

import h5py
import numpy as np
import numpy.typing as npt

EDF_BLOCK: Final = 512
UINT16_MAX: Final = 65535

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


def _scan_start(rng: np.random.Generator) -> datetime:
    return datetime.fromtimestamp(_EPOCH_2026 + int(rng.integers(0, _NINETY_DAYS)), tz=UTC)


# --------------------------------------------------------------------------------------------- 7.3.3


def _saxs_image(
    rng: np.random.Generator, shape: tuple[int, int], center: tuple[float, float]
) -> npt.NDArray[np.uint16]:
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r = np.hypot(x - center[0], y - center[1])
    scale = min(rows, cols)
    # Form-factor-like decay from the beam centre, a Debye-Scherrer-like ring and a flat background: the
    # shape extractors and previews expect, not noise that happens to have the right dtype.
    decay = 4.0e4 / (1.0 + (r / (0.04 * scale)) ** 2) ** 1.5
    ring_radius = scale * float(rng.uniform(0.22, 0.32))
    ring = float(rng.uniform(300.0, 900.0)) * np.exp(-0.5 * ((r - ring_radius) / (0.012 * scale)) ** 2)
    mean: npt.NDArray[np.float64] = decay + ring + 20.0
    # The beamstop shadows the centre; without it the brightest pixel would sit on the direct beam.
    mean[r < 0.03 * scale] = 2.0
    counts: npt.NDArray[np.int64] = rng.poisson(mean)
    return np.clip(counts, 0, UINT16_MAX).astype(np.uint16)


def _edf_bytes(image: npt.NDArray[np.uint16], free: dict[str, str]) -> bytes:
    rows, cols = image.shape
    keys: dict[str, str] = {
        "HeaderID": "EH:000001:000000:000000",
        "Image": "1",
        "ByteOrder": "LowByteFirst",
        "DataType": "UnsignedShort",
        # EDF counts dimensions fastest-first: Dim_1 is the column count.
        "Dim_1": str(cols),
        "Dim_2": str(rows),
        "Size": str(image.size * 2),
        **free,
    }
    body = "{\n" + "".join(f"{key} = {value} ;\n" for key, value in keys.items())
    closing = "}\n"
    unpadded = len(body) + len(closing)
    padded = math.ceil(unpadded / EDF_BLOCK) * EDF_BLOCK
    header = body + " " * (padded - unpadded) + closing
    return header.encode("ascii") + image.astype("<u2").tobytes()


def write_scan_733(
    root: Path,
    scan_path: str,
    rng: np.random.Generator,
    shape: tuple[int, int] = (128, 128),
    atomic: bool = False,
) -> list[Path]:
    """Write `<scan_path>.txt` then `<scan_path>.edf`; return both final paths in write order."""
    txt = _final_path(root, scan_path, ".txt")
    edf = _final_path(root, scan_path, ".edf")
    rows, cols = shape
    name, user = _PEOPLE[int(rng.integers(len(_PEOPLE)))]
    pi_name = _PEOPLE[int(rng.integers(len(_PEOPLE)))][0]
    start = _scan_start(rng)
    energy_kev = float(rng.choice([10.0, 11.9, 12.4]))
    wavelength = 12.398419843 / energy_kev
    exposure = float(rng.choice([0.5, 1.0, 2.0, 5.0]))
    distance_mm = float(rng.uniform(260.0, 3600.0))
    center = (cols / 2 + float(rng.normal(0.0, 2.0)), rows / 2 + float(rng.normal(0.0, 2.0)))
    proposal = f"ALS-{int(rng.integers(10000, 13000))}"
    sample = PurePosixPath(scan_path).name

    # The mix of ':' and '=' and the two odd lines (no delimiter; a time of day with several colons) are
    # what the real header looks like; parsers that split on the first delimiter only have to cope.
    lines = [
        "ALS Beamline 7.3.3 SAXS/WAXS/GISAXS",
        f"Sample Name: {sample}",
        f"Owner: {user}",
        f"PI: {pi_name}",
        f"Email: {user}@lbl.gov",
        f"Proposal = {proposal}",
        f"Date: {start:%Y-%m-%d}",
        f"Acquired at {start:%H:%M:%S}",
        f"Exposure time: {exposure:.3f}",
        f"Energy = {energy_kev * 1000:.1f}",
        f"Wavelength = {wavelength:.6f}",
        f"Sample-Detector Distance: {distance_mm:.2f}",
        f"Beam Center X: {center[0]:.2f}",
        f"Beam Center Y: {center[1]:.2f}",
        f"Sample X Stage = {float(rng.uniform(-5, 5)):.4f}",
        f"Sample Y Stage = {float(rng.uniform(-5, 5)):.4f}",
        f"Sample Thickness: {float(rng.uniform(0.5, 2.0)):.3f}",
        f"I0 Beamstop: {float(rng.uniform(0.8, 1.2)):.5f}",
        "Detector: Pilatus 2M",
        f"Users: {name}",
    ]
    image = _saxs_image(rng, shape, center)
    free = {
        "Title": sample,
        "ExposureTime": f"{exposure:.3f}",
        "Center_1": f"{center[0]:.2f}",
        "Center_2": f"{center[1]:.2f}",
        "PSize_1": "172e-6",
        "PSize_2": "172e-6",
        "SampleDistance": f"{distance_mm / 1000:.5f}",
        "WaveLength": f"{wavelength * 1e-10:.6e}",
        "Date": f"{start:%Y-%m-%dT%H:%M:%S}",
    }
    # The header goes first because the real acquisition writes it first; a watcher that keys on the image
    # may therefore rely on the header already being there.
    _write_once(txt, ("\n".join(lines) + "\n").encode("ascii"), atomic)
    _write_once(edf, _edf_bytes(image, free), atomic)
    return [txt, edf]


# --------------------------------------------------------------------------------------------- 8.3.2


def _tomo_stack(
    rng: np.random.Generator,
    theta_deg: npt.NDArray[np.float64],
    shape: tuple[int, int],
    n_white: int,
    n_dark: int,
) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint16], npt.NDArray[np.uint16]]:
    rows, cols = shape
    u = np.arange(cols, dtype=np.float64) - (cols - 1) / 2
    v = np.arange(rows, dtype=np.float64)
    theta = np.deg2rad(theta_deg)[:, None, None]
    # A few vertical cylinders at different radii from the rotation axis: their shadows sweep sideways
    # with angle, which is what a sinogram of a real sample does.
    path = np.zeros((theta_deg.size, rows, cols), dtype=np.float64)
    for _ in range(3):
        radius = float(rng.uniform(0.06, 0.18)) * cols
        orbit = float(rng.uniform(0.0, 0.25)) * cols
        phase = float(rng.uniform(0.0, 2 * math.pi))
        mu = float(rng.uniform(0.02, 0.08))
        top, bottom = sorted(rng.uniform(0.0, rows, size=2).tolist())
        centre = orbit * np.cos(theta + phase)
        chord = 2 * np.sqrt(np.clip(radius**2 - (u[None, None, :] - centre) ** 2, 0.0, None))
        in_height = ((v >= top) & (v <= bottom + rows * 0.2))[None, :, None]
        path += mu * chord * in_height
    # The beam profile is brighter in the middle rows and has a slight horizontal ripple, so flat-field
    # correction changes the result as it does with real data.
    profile = 20000.0 * np.exp(-0.5 * ((v - rows / 2) / (0.6 * rows)) ** 2)[:, None]
    flat = profile * (1.0 + 0.03 * np.sin(u / 3.0))[None, :]
    dark_level = 100.0

    def counts(mean: npt.NDArray[np.float64]) -> npt.NDArray[np.uint16]:
        return np.clip(rng.poisson(mean), 0, UINT16_MAX).astype(np.uint16)

    data = counts(flat[None] * np.exp(-path) + dark_level)
    white = counts(np.broadcast_to(flat + dark_level, (n_white, rows, cols)))
    dark = counts(np.full((n_dark, rows, cols), dark_level))
    return data, white, dark


def _put_str(group: h5py.Group, name: str, value: bytes, scalar: bool = False) -> None:
    # DX files store text as fixed-length byte strings, mostly as 1-element arrays; a few are true scalars.
    group.create_dataset(name, data=np.bytes_(value) if scalar else np.array([value]))


def _put_num(group: h5py.Group, name: str, value: float | int) -> None:
    group.create_dataset(name, data=np.array([value]))


def write_scan_832(
    root: Path,
    scan_path: str,
    rng: np.random.Generator,
    projections: int = 8,
    shape: tuple[int, int] = (64, 64),
    atomic: bool = False,
    messy: bool = False,
) -> Path:
    """Write `<scan_path>.h5` in the DX layout; with ``messy`` the catalog strings carry real-world junk."""
    final = _final_path(root, scan_path, ".h5")
    temp = _temp_path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    rows, cols = shape
    n_white, n_dark = 2, 2
    name, user = _PEOPLE[int(rng.integers(len(_PEOPLE)))]
    pi_name = _PEOPLE[int(rng.integers(len(_PEOPLE)))][0]
    lead = _LEADS[int(rng.integers(len(_LEADS)))]
    email = f"{user}@lbl.gov".encode()
    proposal = f"ALS-{int(rng.integers(10000, 13000))}".encode()
    if messy:
        # The two forms seen in production: a pasted Python repr fragment, and an unset field.
        email = b"NONE" if rng.random() < 0.5 else b"'" + email + b"',"
        lead = f"'{lead}'"
    start = _scan_start(rng).timestamp()
    energy = float(rng.choice([18.0, 24.0, 30.0]))
    exposure = float(rng.choice([0.05, 0.1, 0.2]))
    theta = np.linspace(0.0, 180.0, projections, endpoint=False)
    data, white, dark = _tomo_stack(rng, theta, shape, n_white, n_dark)
    current = 500.0 - 0.01 * np.arange(projections) + rng.normal(0.0, 0.05, projections)
    stamps = start + np.arange(projections) * (exposure + 0.02)

    with h5py.File(temp, "w") as f:
        sample = f.create_group("measurement/sample")
        _put_str(sample, "file_name", final.name.encode())
        _put_str(sample, "name", PurePosixPath(scan_path).name.encode())
        experiment = sample.create_group("experiment")
        _put_str(experiment, "pi", pi_name.encode())
        _put_str(experiment, "proposal", proposal)
        _put_str(experiment, "beamline", b"8.3.2", scalar=True)
        _put_str(experiment, "experiment_lead", lead.encode())
        experimenter = sample.create_group("experimenter")
        _put_str(experimenter, "email", email)
        _put_str(experimenter, "name", name.encode())

        instrument = f.create_group("measurement/instrument")
        _put_str(instrument, "instrument_name", b"ALS 8.3.2 micro-tomography", scalar=True)
        instrument.create_dataset("time_stamp", data=stamps)
        detector = instrument.create_group("detector")
        _put_str(detector, "manufacturer", b"PCO")
        _put_str(detector, "model", b"edge")
        _put_num(detector, "pixel_size", 0.65)
        _put_num(detector, "binning_x", 1)
        _put_num(detector, "binning_y", 1)
        _put_num(detector, "dimension_x", cols)
        _put_num(detector, "dimension_y", rows)
        _put_num(detector, "delay_time", 0.02)
        _put_num(detector, "temperature", float(rng.normal(5.0, 0.2)))
        detector.create_dataset("exposure_time", data=np.full(projections, exposure))
        source = instrument.create_group("source")
        _put_str(source, "name", b"Advanced Light Source")
        _put_str(source, "mode", b"top-off")
        source.create_dataset("current", data=current)
        mono = instrument.create_group("monochromator")
        _put_str(mono, "type", b"multilayer")
        mono.create_dataset("energy", data=np.full(projections, energy))
        slits = instrument.create_group("slits")
        _put_num(slits, "horizontal_gap", float(rng.uniform(2.0, 10.0)))
        _put_num(slits, "vertical_gap", float(rng.uniform(1.0, 4.0)))
        attenuator = instrument.create_group("attenuator")
        _put_str(attenuator, "material", b"Al")
        _put_num(attenuator, "thickness", float(rng.choice([0.0, 0.5, 1.0])))

        acquisition = f.create_group("process/acquisition")
        rotation = acquisition.create_group("rotation")
        _put_num(rotation, "range", 180.0)
        _put_num(rotation, "num_angles", projections)
        _put_num(rotation, "rotation_start", 0.0)
        flats = acquisition.create_group("flat_fields")
        _put_num(flats, "num_flat_fields", n_white)
        _put_num(flats, "i0cycle", 0)
        darks = acquisition.create_group("dark_fields")
        _put_num(darks, "num_dark_fields", n_dark)
        mosaic = acquisition.create_group("mosaic")
        _put_num(mosaic, "horizontal_tiles", 1)
        _put_num(mosaic, "vertical_tiles", 1)

        exchange = f.create_group("exchange")
        exchange.create_dataset("data", data=data)
        exchange.create_dataset("data_white", data=white)
        exchange.create_dataset("data_dark", data=dark)
        exchange.create_dataset("theta", data=theta)

    if atomic:
        temp.rename(final)
    else:
        # h5py opens, seeks and closes on its own schedule; copying the finished bytes gives the final name
        # exactly one IN_CLOSE_WRITE, like a detector that writes in one go.
        payload = temp.read_bytes()
        with final.open("wb") as fh:
            fh.write(payload)
        temp.unlink()
    return final


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
