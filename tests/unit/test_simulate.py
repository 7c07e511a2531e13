"""The detector simulator writes files an extractor and a watcher would accept as real scans."""

from __future__ import annotations

import queue
import re
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from beamflow.common.simulate import (
    EDF_BLOCK,
    DetectorSimulator,
    SimulatedScan,
    write_scan_733,
    write_scan_832,
    write_small,
)
from watchdog.events import FileClosedEvent, FileSystemEventHandler
from watchdog.observers import Observer

SCAN = "2026/alsuser/sample_001"


def _parse_edf(path: Path) -> tuple[dict[str, str], bytes]:
    raw = path.read_bytes()
    end = raw.index(b"}\n") + 2
    header = raw[:end].decode("ascii")
    assert header.startswith("{\n")
    keys: dict[str, str] = {}
    for line in header[2:-2].splitlines():
        line = line.strip()
        if not line:
            continue
        assert line.endswith(";"), line
        key, value = line[:-1].split("=", 1)
        keys[key.strip()] = value.strip()
    return keys, raw[end:]


def _parse_txt(path: Path) -> tuple[dict[str, str], list[str]]:
    pairs: dict[str, str] = {}
    others: list[str] = []
    for line in path.read_text().splitlines():
        if line.count(":") + line.count("=") == 1:
            key, value = re.split(r"[:=]", line, maxsplit=1)
            pairs[key.strip()] = value.strip()
        else:
            others.append(line)
    return pairs, others


def _tree(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype[np.generic]]]:
    found: dict[str, tuple[tuple[int, ...], np.dtype[np.generic]]] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: found.update({name: (obj.shape, obj.dtype)}) if isinstance(obj, h5py.Dataset) else None
        )
    return found


# ---------------------------------------------------------------------------------------------- 7.3.3


def test_733_writes_txt_then_edf(tmp_path: Path) -> None:
    files = write_scan_733(tmp_path, SCAN, np.random.default_rng(1), shape=(48, 80))
    assert files == [tmp_path / f"{SCAN}.txt", tmp_path / f"{SCAN}.edf"]
    assert all(p.is_file() for p in files)


def test_edf_header_is_padded_and_describes_pixels(tmp_path: Path) -> None:
    rows, cols = 48, 80
    _, edf = write_scan_733(tmp_path, SCAN, np.random.default_rng(1), shape=(rows, cols))
    keys, pixels = _parse_edf(edf)
    header_len = edf.stat().st_size - len(pixels)
    assert header_len % EDF_BLOCK == 0
    assert keys["ByteOrder"] == "LowByteFirst"
    assert keys["DataType"] == "UnsignedShort"
    assert (int(keys["Dim_1"]), int(keys["Dim_2"])) == (cols, rows)
    assert int(keys["Size"]) == rows * cols * 2 == len(pixels)
    image = np.frombuffer(pixels, dtype="<u2").reshape(rows, cols)
    # A SAXS pattern, not a constant: bright near the beam, darker at the edge, and noisy.
    assert image.max() > 10 * np.median(image[0])
    assert len(np.unique(image)) > 50


def test_txt_header_parses_and_has_time_of_day(tmp_path: Path) -> None:
    txt, _ = write_scan_733(tmp_path, SCAN, np.random.default_rng(2))
    pairs, others = _parse_txt(txt)
    for key in (
        "Sample Name",
        "Exposure time",
        "Energy",
        "Sample-Detector Distance",
        "Beam Center X",
        "Beam Center Y",
        "Wavelength",
        "Owner",
        "Proposal",
        "PI",
        "Email",
        "Date",
    ):
        assert pairs.get(key), key
    assert pairs["Sample Name"] == "sample_001"
    float(pairs["Energy"])
    float(pairs["Beam Center X"])
    assert any(":" not in line and "=" not in line for line in others)
    assert any(re.search(r"\b\d{2}:\d{2}:\d{2}\b", line) for line in others)


# ---------------------------------------------------------------------------------------------- 8.3.2

STRINGS = [
    "measurement/sample/experiment/pi",
    "measurement/sample/experiment/proposal",
    "measurement/sample/experiment/beamline",
    "measurement/sample/experiment/experiment_lead",
    "measurement/sample/experimenter/email",
    "measurement/sample/experimenter/name",
    "measurement/sample/file_name",
    "measurement/instrument/instrument_name",
]
SERIES = [
    "measurement/instrument/source/current",
    "measurement/instrument/monochromator/energy",
    "measurement/instrument/detector/exposure_time",
    "measurement/instrument/time_stamp",
    "exchange/theta",
]


def test_832_has_dx_layout(tmp_path: Path) -> None:
    n, rows, cols = 6, 24, 40
    path = write_scan_832(tmp_path, "2026/tomo/scan_1", np.random.default_rng(3), projections=n, shape=(rows, cols))
    assert path == tmp_path / "2026/tomo/scan_1.h5"
    tree = _tree(path)
    for name in STRINGS:
        shape, dtype = tree[name]
        assert dtype.kind == "S", name
        assert shape in ((), (1,)), name
    for name in SERIES:
        assert tree[name][0] == (n,), name
        assert tree[name][1].kind == "f", name
    assert tree["exchange/data"] == ((n, rows, cols), np.dtype(np.uint16))
    assert tree["exchange/data_white"][0][1:] == (rows, cols)
    assert tree["exchange/data_dark"][0][1:] == (rows, cols)
    assert tree["exchange/data_white"][1] == tree["exchange/data_dark"][1] == np.dtype(np.uint16)
    for group in ("detector", "source", "monochromator", "slits", "attenuator"):
        assert any(k.startswith(f"measurement/instrument/{group}/") for k in tree), group
    for group in ("rotation", "flat_fields", "dark_fields"):
        assert any(k.startswith(f"process/acquisition/{group}/") for k in tree), group
    scalars = [k for k, (shape, _) in tree.items() if shape == (1,) and "/instrument/" in k]
    assert len(scalars) >= 10
    with h5py.File(path, "r") as f:
        assert f["measurement/sample/file_name"][0] == b"scan_1.h5"
        assert f["measurement/instrument/detector/dimension_x"][0] == cols
        assert re.fullmatch(rb"[a-z]+@lbl\.gov", f["measurement/sample/experimenter/email"][0])
        data = f["exchange/data"][()]
        white = f["exchange/data_white"][()]
        dark = f["exchange/data_dark"][()]
    # The sample absorbs: projections are darker than flats, which are brighter than darks.
    assert data.mean() < white.mean()
    assert dark.mean() < data.mean()


def test_832_messy_strings(tmp_path: Path) -> None:
    seen: set[bytes] = set()
    for seed in range(12):
        path = write_scan_832(
            tmp_path, f"m/{seed}", np.random.default_rng(seed), projections=2, shape=(8, 8), messy=True
        )
        with h5py.File(path, "r") as f:
            email = f["measurement/sample/experimenter/email"][0]
        assert email == b"NONE" or re.fullmatch(rb"'[a-z]+@lbl\.gov',", email), email
        seen.add(b"NONE" if email == b"NONE" else b"quoted")
    assert seen == {b"NONE", b"quoted"}


# ------------------------------------------------------------------------------------ determinism, modes


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    def scan(root: Path, seed: int) -> list[bytes]:
        files = write_scan_733(root, SCAN, np.random.default_rng(seed), shape=(32, 32))
        files.append(write_scan_832(root, "t/tomo", np.random.default_rng(seed), projections=3, shape=(16, 16)))
        return [p.read_bytes() for p in files]

    a, b, c = scan(tmp_path / "a", 7), scan(tmp_path / "b", 7), scan(tmp_path / "c", 8)
    assert a == b
    for x, z in zip(a, c, strict=True):
        assert x != z


def test_simulator_scans_depend_only_on_seed_and_index(tmp_path: Path) -> None:
    one = DetectorSimulator(tmp_path / "1", tmp_path / "1", seed=5)
    two = DetectorSimulator(tmp_path / "2", tmp_path / "2", seed=5)
    one.scan_733(1)
    first = one.scan_733(2)
    second = two.scan_733(2)
    assert first.scan_path == second.scan_path == "2026/demo/sample_0002"
    assert [p.read_bytes() for p in first.files] == [p.read_bytes() for p in second.files]
    assert one.scan_832(3).scan_path == "2026/demo/tomo_0003"


@pytest.mark.parametrize("atomic", [False, True])
def test_no_temp_files_left(tmp_path: Path, atomic: bool) -> None:
    write_scan_733(tmp_path, SCAN, np.random.default_rng(0), shape=(16, 16), atomic=atomic)
    write_scan_832(tmp_path, "x/tomo", np.random.default_rng(0), projections=2, shape=(8, 8), atomic=atomic)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert names == [f"{SCAN}.edf", f"{SCAN}.txt", "x/tomo.h5"]


def test_restricted_scan_path(tmp_path: Path) -> None:
    sim = DetectorSimulator(None, tmp_path, seed=1)
    scan = sim.scan_832(4, folder="2026/beamtime", restricted=True)
    assert isinstance(scan, SimulatedScan)
    assert scan.beamline == "bl832"
    assert scan.scan_path == "restricted/2026/beamtime/tomo_0004"
    assert scan.files == [tmp_path / "restricted/2026/beamtime/tomo_0004.h5"]
    assert scan.closed_at >= scan.files[0].stat().st_mtime - 1
    assert not sim.scan_832(4, folder="2026/beamtime").scan_path.startswith("restricted/")
    with pytest.raises(ValueError):
        sim.scan_733(1)


def test_write_small(tmp_path: Path) -> None:
    before = time.time()
    closed = write_small(tmp_path, "a/b/c.bin", b"xyz")
    assert (tmp_path / "a/b/c.bin").read_bytes() == b"xyz"
    assert before <= closed <= time.time()
    write_small(tmp_path, "a/b/d.bin", b"")
    assert (tmp_path / "a/b/d.bin").read_bytes() == b""


def test_scan_path_must_stay_under_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_scan_733(tmp_path, "../escape", np.random.default_rng(0))


# ------------------------------------------------------------------------------------------ inotify


class _Closed(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events: queue.Queue[str] = queue.Queue()

    def on_closed(self, event: FileClosedEvent) -> None:
        path = event.src_path
        self.events.put(path.decode() if isinstance(path, bytes) else path)


def _wait_for(handler: _Closed, expected: set[str], timeout: float = 5.0) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not expected <= seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            seen.add(handler.events.get(timeout=remaining))
        except queue.Empty:
            break
    return seen


def test_inotify_sees_close_write_on_final_names(tmp_path: Path) -> None:
    folder = tmp_path / "2026/alsuser"
    # Created before watching so the test does not depend on the observer catching up with a new folder.
    folder.mkdir(parents=True)
    handler = _Closed()
    observer = Observer()
    observer.schedule(handler, str(tmp_path), recursive=True)
    observer.start()
    try:
        files = write_scan_733(tmp_path, SCAN, np.random.default_rng(0), shape=(32, 32))
        h5 = write_scan_832(tmp_path, "2026/alsuser/tomo_001", np.random.default_rng(0), projections=2, shape=(8, 8))
        expected = {str(p) for p in [*files, h5]}
        seen = _wait_for(handler, expected)
    finally:
        observer.stop()
        observer.join(timeout=5)
    assert expected <= seen
