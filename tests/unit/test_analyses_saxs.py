"""The 7.3.3 SAXS/WAXS integration: the numbers of I(q), where the geometry comes from, and the CLI contract.

Synthetic images with a known geometry check the physics (a ring lands at the q the geometry predicts, a
flat image gives a flat profile, masked pixels do not count, q is in 1/Å); a `write_scan_733` scan checks
the whole path from the simulator's files to both outputs; subprocess runs check the exit codes and the
JSON summary line the analyzer reads.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
from beamflow.analyzer.analyses.errors import AnalysisInputError
from beamflow.analyzer.analyses.geometry import Geometry, GeometryOverrides, q_map
from beamflow.analyzer.analyses.saxs_integrate import integrate
from beamflow.common.edf import encode_edf
from beamflow.common.simulate import write_scan_733

# A geometry in the EDF header's own units (metres): 100 µm pixels 1 m from the sample, 1 Å X-rays.
CENTER = (40.3, 35.7)  # x (column), y (row)
EDF_GEOMETRY = {
    "Center_1": f"{CENTER[0]}",
    "Center_2": f"{CENTER[1]}",
    "PSize_1": "1e-4",
    "PSize_2": "1e-4",
    "SampleDistance": "1.0",
    "WaveLength": "1e-10",
}
SHAPE = (80, 96)


def expected_q(radius_mm: float, distance_mm: float, wavelength_a: float) -> float:
    """q = 4π sin(θ)/λ with tan 2θ = r/d, written out here independently of the code under test."""
    return 4 * math.pi * math.sin(0.5 * math.atan(radius_mm / distance_mm)) / wavelength_a


def radius_px(shape: tuple[int, int] = SHAPE, center: tuple[float, float] = CENTER) -> npt.NDArray[np.float64]:
    y, x = np.indices(shape, dtype=np.float64)
    return np.hypot(x - center[0], y - center[1])


def write_edf(path: Path, image: npt.NDArray[Any], header: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_edf([image], EDF_GEOMETRY if header is None else header))
    return path


def read_h5(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        data: dict[str, Any] = {name: f[name][()] for name in ("q", "q_edges", "I", "sigma", "npix")}
        data["attrs"] = dict(f.attrs)
        data["units"] = {name: f[name].attrs["units"] for name in ("q", "I", "sigma", "npix")}
    return data


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "beamflow.analyzer.analyses.saxs_integrate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


# ------------------------------------------------------------------------------------------- numbers


def test_q_is_in_inverse_angstrom_for_a_known_geometry() -> None:
    # 1 mm pixels 3 mm from the sample: the pixel 3 columns from the beam sees 2θ = 45°.
    geometry = Geometry(0.0, 0.0, 3.0, 1000.0, 1000.0, 1.0)
    q = q_map((4, 4), geometry)
    assert q[0, 0] == 0.0
    assert q[0, 3] == pytest.approx(4 * math.pi * math.sin(math.pi / 8), rel=1e-12)
    assert q[3, 0] == pytest.approx(q[0, 3], rel=1e-12)
    assert q[3, 3] == pytest.approx(expected_q(3 * math.sqrt(2), 3.0, 1.0), rel=1e-12)
    # Half the wavelength, twice the q.
    assert q_map((4, 4), Geometry(0.0, 0.0, 3.0, 1000.0, 1000.0, 0.5))[0, 3] == pytest.approx(2 * q[0, 3])


def test_a_ring_at_a_known_radius_peaks_at_its_q(tmp_path: Path) -> None:
    ring_px = 25.0
    image = (10.0 + 1000.0 * np.exp(-0.5 * ((radius_px() - ring_px) / 0.8) ** 2)).astype(np.float32)
    edf = write_edf(tmp_path / "ring.edf", image)
    result = integrate([edf], tmp_path / "out", bins=120)
    profile = read_h5(tmp_path / "out" / "ring_iq.h5")

    peak_q = profile["q"][np.nanargmax(profile["I"])]
    width = profile["q_edges"][1] - profile["q_edges"][0]
    assert abs(peak_q - expected_q(ring_px * 0.1, 1000.0, 1.0)) <= width
    assert result.outputs == ["ring_iq.txt", "ring_iq.h5"]


def test_a_flat_image_gives_a_flat_profile_with_poisson_errors(tmp_path: Path) -> None:
    edf = write_edf(tmp_path / "flat.edf", np.full(SHAPE, 50.0, dtype=np.float32))
    integrate([edf], tmp_path / "out", bins=60)
    profile = read_h5(tmp_path / "out" / "flat_iq.h5")

    filled = profile["npix"] > 0
    assert profile["npix"].sum() == SHAPE[0] * SHAPE[1]
    np.testing.assert_allclose(profile["I"][filled], 50.0, rtol=1e-12)
    np.testing.assert_allclose(
        profile["sigma"][filled], np.sqrt(50.0 * profile["npix"][filled]) / profile["npix"][filled]
    )
    assert np.isnan(profile["I"][~filled]).all()


def test_masked_pixels_do_not_contribute(tmp_path: Path) -> None:
    image = np.full(SHAPE, 7.0, dtype=np.float32)
    image[10:20, 30:50] = 1e6  # hot region, excluded by the mask file
    image[60, 5:9] = -1.0  # the detector's flag for bad pixels
    image[:, 70] = 0.0  # a module gap: zero all the way down
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[10:20, 30:50] = 1
    np.save(tmp_path / "mask.npy", mask)
    edf = write_edf(tmp_path / "masked.edf", image)

    result = integrate([edf], tmp_path / "out", bins=50, mask=tmp_path / "mask.npy")
    profile = read_h5(tmp_path / "out" / "masked_iq.h5")

    masked = 10 * 20 + 4 + SHAPE[0]
    filled = profile["npix"] > 0
    np.testing.assert_allclose(profile["I"][filled], 7.0, rtol=1e-12)
    assert profile["npix"].sum() == SHAPE[0] * SHAPE[1] - masked
    assert result.parameters["images"][0]["masked_pixels"] == masked


def test_the_text_and_hdf5_outputs_hold_the_same_profile_with_units(tmp_path: Path) -> None:
    ring = 1000.0 * np.exp(-0.5 * ((radius_px() - 20.0) / 1.5) ** 2)
    edf = write_edf(tmp_path / "s.edf", (5.0 + ring).astype(np.float32))
    integrate([edf], tmp_path / "out", bins=40)
    text = (tmp_path / "out" / "s_iq.txt").read_text(encoding="utf-8")
    table = np.loadtxt(text.splitlines())
    profile = read_h5(tmp_path / "out" / "s_iq.h5")

    assert "# q [1/Å]  I [counts/pixel]  sigma [counts/pixel]  npix" in text
    assert "# distance_mm = 1000" in text
    np.testing.assert_allclose(table[:, 0], profile["q"], rtol=1e-7)
    np.testing.assert_allclose(table[:, 1], profile["I"], rtol=1e-7)
    np.testing.assert_array_equal(table[:, 3], profile["npix"])
    assert profile["units"] == {"q": "1/angstrom", "I": "counts/pixel", "sigma": "counts/pixel", "npix": "pixels"}
    assert profile["attrs"]["wavelength_A"] == pytest.approx(1.0)
    assert profile["attrs"]["pixel_size_x_um"] == 100.0
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------- geometry


def test_geometry_from_the_companion_txt_with_units_and_energy(tmp_path: Path) -> None:
    # No geometry in the EDF header: distance in cm and the energy in eV come from the .txt, as 7.3.3 writes it.
    edf = write_edf(tmp_path / "scan.edf", np.ones((4, 4), dtype=np.float32), {"Title": "no geometry"})
    (tmp_path / "scan.txt").write_bytes(
        b"ALS Beamline 7.3.3 SAXS/WAXS/GISAXS\r\nAcquired at 12:30:01\r\nTime: 12:30:01\r\n"
        b"Energy = 12398.419843320026\r\nSample-Detector Distance: 0.3 cm\r\n"
        b"Beam Center X: 0\r\nBeam Center Y: 0.00\r\n"
    )
    result = integrate([edf], tmp_path / "out", bins=8, overrides=GeometryOverrides(pixel_size_um=1000.0))
    image = result.parameters["images"][0]

    assert image["geometry"]["distance_mm"] == pytest.approx(3.0)
    assert image["geometry"]["wavelength_A"] == pytest.approx(1.0)
    assert "companion .txt key 'Energy'" in image["geometry_sources"]["wavelength_A"]
    assert image["geometry_sources"]["pixel_size_x_um"] == "option --pixel-size"
    # The farthest pixel (3, 3) is 3√2 mm from the beam at 3 mm: the last bin edge is its q.
    assert image["q_range"][1] == pytest.approx(expected_q(3 * math.sqrt(2), 3.0, 1.0), rel=1e-9)


def test_options_override_the_headers(tmp_path: Path) -> None:
    edf = write_edf(tmp_path / "o.edf", np.ones(SHAPE, dtype=np.float32))
    overrides = GeometryOverrides(beam_center_x_px=0.0, beam_center_y_px=0.0, distance_mm=500.0, energy_keV=12.4)
    result = integrate([edf], tmp_path / "out", bins=10, overrides=overrides)
    geometry = result.parameters["images"][0]["geometry"]

    assert (geometry["beam_center_x_px"], geometry["distance_mm"]) == (0.0, 500.0)
    assert geometry["wavelength_A"] == pytest.approx(12.398419843320026 / 12.4)
    corner_mm = math.hypot((SHAPE[1] - 1) * 0.1, (SHAPE[0] - 1) * 0.1)
    assert result.parameters["images"][0]["q_range"][1] == pytest.approx(
        expected_q(corner_mm, 500.0, geometry["wavelength_A"]), rel=1e-9
    )


def test_missing_geometry_names_the_key(tmp_path: Path) -> None:
    header = {k: v for k, v in EDF_GEOMETRY.items() if k != "SampleDistance"}
    edf = write_edf(tmp_path / "nodist.edf", np.ones((8, 8), dtype=np.float32), header)
    with pytest.raises(AnalysisInputError, match="SampleDistance") as caught:
        integrate([edf], tmp_path / "out")
    assert "--distance" in str(caught.value)
    assert caught.value.path == str(edf)


# ------------------------------------------------------------------------------------------- simulator


def test_a_simulated_scan_integrates_and_its_q_range_reaches_the_detector_corners(tmp_path: Path) -> None:
    files = write_scan_733(tmp_path / "raw", "2026/demo/sample_0001", np.random.default_rng(3), (96, 128))
    result = integrate(files, tmp_path / "out")
    image = result.parameters["images"][0]
    profile = read_h5(tmp_path / "out" / "sample_0001_iq.h5")
    header = profile["attrs"]

    rows, cols = 96, 128
    corners_mm = [
        math.hypot((x - header["beam_center_x_px"]) * 0.172, (y - header["beam_center_y_px"]) * 0.172)
        for x in (0, cols - 1)
        for y in (0, rows - 1)
    ]
    q_corner = expected_q(max(corners_mm), header["distance_mm"], header["wavelength_A"])
    assert profile["q_edges"][-1] == pytest.approx(q_corner, rel=1e-9)
    assert abs(profile["q"][-1] - q_corner) <= profile["q_edges"][1] - profile["q_edges"][0]
    assert len(profile["q"]) == 500
    assert image["header"] == str(files[0])
    assert header["pixel_size_x_um"] == 172.0
    # The module gaps of the simulated Pilatus are left out, and the pattern decays with q.
    assert image["masked_pixels"] > 0
    filled = profile["npix"] > 0
    intensity = profile["I"][filled]
    assert intensity[: len(intensity) // 10].mean() > intensity[-len(intensity) // 10 :].mean()


def test_the_cli_prints_one_json_line_listing_outputs_that_exist(tmp_path: Path) -> None:
    files = write_scan_733(tmp_path / "raw", "s/sample_0002", np.random.default_rng(4), (64, 64))
    (tmp_path / "raw" / "s" / "notes.log").write_text("not part of the analysis")
    done = run_cli("--output", tmp_path / "out", "--bins", 100, *files, tmp_path / "raw" / "s" / "notes.log")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["analysis"] == "saxs_integrate"
    assert summary["outputs"] == ["sample_0002_iq.txt", "sample_0002_iq.h5"]
    assert all((tmp_path / "out" / name).is_file() for name in summary["outputs"])
    assert summary["parameters"]["bins"] == 100
    assert summary["software"]["name"] == "beamflow.analyzer.analyses.saxs_integrate"
    assert summary["software"]["version"]
    assert "notes.log" in done.stderr


# ------------------------------------------------------------------------------------------- exit codes


def test_a_truncated_edf_exits_3_naming_the_file(tmp_path: Path) -> None:
    _txt, edf = write_scan_733(tmp_path / "raw", "cut", np.random.default_rng(5), (64, 64))
    edf.write_bytes(edf.read_bytes()[:3000])
    done = run_cli("--output", tmp_path / "out", edf)
    assert done.returncode == 3
    assert "cut.edf" in done.stderr and "truncated" in done.stderr
    assert done.stdout == ""


def test_a_garbage_file_exits_3_naming_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.edf"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    done = run_cli("--output", tmp_path / "out", junk)
    assert done.returncode == 3
    assert "junk.edf" in done.stderr


def test_missing_geometry_exits_3_and_an_override_fixes_it(tmp_path: Path) -> None:
    header = {k: v for k, v in EDF_GEOMETRY.items() if k != "Center_1"}
    edf = write_edf(tmp_path / "nocenter.edf", np.ones((8, 8), dtype=np.float32), header)
    done = run_cli("--output", tmp_path / "out", edf)
    assert done.returncode == 3
    assert "nocenter.edf" in done.stderr and "Center_1" in done.stderr and "--center-x" in done.stderr

    fixed = run_cli("--output", tmp_path / "out", "--center-x", 4, "--bins", 5, edf)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["parameters"]["overrides"] == {"beam_center_x_px": 4.0}


@pytest.mark.parametrize(
    "args",
    [
        ["--bins", "0"],
        ["--wavelength", "1", "--energy", "12"],
        ["--distance", "-5"],
        ["--q-min", "0.2", "--q-max", "0.1"],
    ],
)
def test_bad_usage_exits_2(tmp_path: Path, args: list[str]) -> None:
    edf = write_edf(tmp_path / "ok.edf", np.ones((8, 8), dtype=np.float32))
    done = run_cli("--output", tmp_path / "out", *args, edf)
    assert done.returncode == 2, done.stderr


def test_no_image_among_the_inputs_exits_2(tmp_path: Path) -> None:
    (tmp_path / "only.txt").write_text("Energy = 10000\n")
    done = run_cli("--output", tmp_path / "out", tmp_path / "only.txt")
    assert done.returncode == 2
    assert "none of the inputs is an EDF image" in done.stderr
