"""The 8.3.2 tomography preview: binning, flat/dark correction, chunked processing and the CLI contract.

Small stacks with known values check the numbers (binning keeps the mean, levels halve, a flat-field
corrected constant is 1.0, chunked processing equals processing everything at once); a `write_scan_832`
scan run through the command line checks the DX layout end to end and the JSON summary line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest
from beamflow.analyzer.analyses.binning import AnglePairer, bin_angles, bin_pairs, bin_pixels
from beamflow.analyzer.analyses.flatfield import FlatField
from beamflow.analyzer.analyses.tomo_preview import chunk_for_memory, memory_bound, plan_levels, preview
from beamflow.common.simulate import write_scan_832


def write_dx(
    path: Path,
    data: npt.NDArray[Any],
    *,
    flats: npt.NDArray[Any] | None = None,
    darks: npt.NDArray[Any] | None = None,
    theta: npt.NDArray[Any] | None = None,
) -> Path:
    """A minimal DX-layout file: only what the preview reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("exchange/data", data=data)
        if flats is not None:
            f.create_dataset("exchange/data_white", data=flats)
        if darks is not None:
            f.create_dataset("exchange/data_dark", data=darks)
        if theta is not None:
            f.create_dataset("exchange/theta", data=theta).attrs["units"] = b"deg"
    return path


def levels_of(path: Path) -> dict[str, dict[str, Any]]:
    with h5py.File(path, "r") as f:
        return {
            name: {
                "data": f[name]["data"][()],
                "theta": f[name]["theta"][()] if "theta" in f[name] else None,
                **dict(f[name].attrs),
            }
            for name in sorted(k for k in f if k.startswith("level_"))
        }


def run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "beamflow.analyzer.analyses.tomo_preview", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def random_counts(shape: tuple[int, ...], seed: int = 0) -> npt.NDArray[np.uint16]:
    return np.random.default_rng(seed).integers(200, 5000, size=shape).astype(np.uint16)


# ------------------------------------------------------------------------------------------- binning


def test_pixel_binning_is_the_2x2_mean_and_preserves_the_mean() -> None:
    stack = np.random.default_rng(1).random((3, 32, 48), dtype=np.float32)
    binned = bin_pixels(stack)
    assert binned.shape == (3, 16, 24) and binned.dtype == np.float32
    assert binned.mean(dtype=np.float64) == pytest.approx(stack.mean(dtype=np.float64), rel=1e-6)
    assert binned[2, 5, 7] == pytest.approx(stack[2, 10:12, 14:16].mean(), rel=1e-6)
    # An odd trailing row and column have no partner and are dropped.
    assert bin_pixels(np.ones((2, 5, 7), dtype=np.float32)).shape == (2, 2, 3)


def test_angle_pairs_in_chunks_equal_pairs_of_the_whole_stack() -> None:
    stack = np.random.default_rng(2).random((11, 4, 6), dtype=np.float32)
    pairer = AnglePairer()
    chunked = np.concatenate([pairer.push(stack[i : i + 3]) for i in range(0, 11, 3)])
    np.testing.assert_array_equal(chunked, bin_pairs(stack))
    assert chunked.shape == (5, 4, 6)
    np.testing.assert_allclose(bin_angles(np.arange(5.0)), [0.5, 2.5])


def test_flat_dark_correction_is_safe_where_the_flat_saw_no_beam() -> None:
    dark = np.full((2, 3), 100.0, dtype=np.float32)
    flat = np.array([[1000.0, 100.0, 100.5], [550.0, 1000.0, 1000.0]], dtype=np.float32)
    stack = np.array([[[1000.0, 5000.0, 3000.0], [325.0, 50.0, 1900.0]]], dtype=np.float32)
    field = FlatField.from_frames(dark, flat, min_difference=1.0)
    field.apply(stack)
    # flat == dark and flat - dark < 1 count: no beam, 0; below the dark: clipped to 0; else normalised.
    np.testing.assert_allclose(stack[0], [[1.0, 0.0, 0.0], [0.5, 0.0, 2.0]])
    assert field.kind == "flat-dark"
    assert FlatField.from_frames(dark, None).kind == "dark"
    assert FlatField.from_frames(None, None).kind == "none"


def test_levels_halve_down_to_the_minimum_size() -> None:
    assert [level.shape for level in plan_levels((6, 64, 48), 8)] == [(6, 32, 24), (6, 16, 12)]
    assert [level.binning for level in plan_levels((6, 64, 48), 8)] == [2, 4]
    # Level 1 is written even when it is already below the minimum size.
    assert [level.shape for level in plan_levels((6, 64, 64), 64)] == [(6, 32, 32)]
    assert [level.shape for level in plan_levels((7, 64, 64), 16, angles=True)] == [(3, 32, 32), (1, 16, 16)]
    assert plan_levels((5, 1, 64), 1) == []


def test_the_memory_bound_sizes_the_chunks() -> None:
    budget = 512 << 20
    chunk = chunk_for_memory(2160, 2560, budget)
    assert chunk >= 1
    assert memory_bound(2160, 2560, chunk) <= budget < memory_bound(2160, 2560, chunk + 1)
    assert chunk_for_memory(2160, 2560, 1) == 1


# ------------------------------------------------------------------------------------------- the preview file


def test_preview_levels_halve_and_keep_the_mean(tmp_path: Path) -> None:
    data = random_counts((6, 64, 48))
    source = write_dx(tmp_path / "scan.h5", data, theta=np.linspace(0, 180, 6, endpoint=False))
    result = preview([source], tmp_path / "out", min_size=8)
    levels = levels_of(tmp_path / "out" / "scan_preview.h5")

    assert result.outputs == ["scan_preview.h5"]
    assert list(levels) == ["level_1", "level_2"]
    assert levels["level_1"]["data"].shape == (6, 32, 24)
    assert levels["level_2"]["data"].shape == (6, 16, 12)
    for name, level in levels.items():
        assert level["data"].dtype == np.float32
        assert level["data"].mean(dtype=np.float64) == pytest.approx(data.mean(dtype=np.float64), rel=1e-6)
        assert level["correction"] == "none"
        assert level["source_dataset"] == "/exchange/data"
        assert list(level["shape"]) == list(level["data"].shape), name
        np.testing.assert_array_equal(level["theta"], np.linspace(0, 180, 6, endpoint=False))
    np.testing.assert_array_equal(levels["level_2"]["data"], bin_pixels(levels["level_1"]["data"]))
    with h5py.File(tmp_path / "out" / "scan_preview.h5", "r") as f:
        stack = f["level_1/data"]
        assert stack.compression == "gzip" and stack.chunks == (1, 32, 24)
        assert f["theta"].attrs["units"] in (b"deg", "deg")


def test_a_flat_field_corrected_constant_is_one_at_every_level(tmp_path: Path) -> None:
    shape = (5, 32, 32)
    source = write_dx(
        tmp_path / "const.h5",
        np.full(shape, 1000, dtype=np.uint16),
        flats=np.full((2, 32, 32), 1000, dtype=np.uint16),
        darks=np.full((3, 32, 32), 100, dtype=np.uint16),
    )
    result = preview([source], tmp_path / "out", min_size=4)
    levels = levels_of(tmp_path / "out" / "const_preview.h5")

    assert len(levels) == 3
    for level in levels.values():
        np.testing.assert_array_equal(level["data"], 1.0)
        assert level["correction"] == "flat-dark"
    assert result.parameters["files"][0]["correction"] == "flat-dark"
    assert result.warnings == [f"{source}: no angles at /exchange/theta; the preview has none"]


@pytest.mark.parametrize("angle_binning", [False, True])
def test_chunked_processing_equals_processing_all_at_once(tmp_path: Path, angle_binning: bool) -> None:
    data = random_counts((11, 32, 24), seed=3)
    flats = random_counts((3, 32, 24), seed=4) + 6000
    darks = random_counts((2, 32, 24), seed=5) // 20
    source = write_dx(tmp_path / "c.h5", data, flats=flats, darks=darks, theta=np.arange(11.0))

    options: dict[str, Any] = {"min_size": 3, "angle_binning": angle_binning}
    preview([source], tmp_path / "whole", chunk_projections=11, **options)
    result = preview([source], tmp_path / "chunked", chunk_projections=3, **options)
    whole = levels_of(tmp_path / "whole" / "c_preview.h5")
    chunked = levels_of(tmp_path / "chunked" / "c_preview.h5")

    assert result.parameters["files"][0]["chunk_projections"] == 3
    assert list(whole) == list(chunked) == ["level_1", "level_2", "level_3"]
    for name in whole:
        np.testing.assert_array_equal(chunked[name]["data"], whole[name]["data"])
        np.testing.assert_array_equal(chunked[name]["theta"], whole[name]["theta"])
    # And against the definition, computed here on the whole stack in float64.
    dark = darks.mean(axis=0, dtype=np.float64)
    corrected = np.clip((data - dark) / (flats.mean(axis=0, dtype=np.float64) - dark), 0, None)
    expected = corrected.reshape(11, 16, 2, 12, 2).mean(axis=(2, 4))
    if angle_binning:
        expected = expected[:10].reshape(5, 2, 16, 12).mean(axis=1)
        np.testing.assert_allclose(whole["level_1"]["theta"], np.arange(0.5, 10, 2))
    np.testing.assert_allclose(whole["level_1"]["data"], expected, rtol=1e-5)


# ------------------------------------------------------------------------------------------- command line


def test_a_simulated_scan_end_to_end_through_the_cli(tmp_path: Path) -> None:
    source = write_scan_832(tmp_path / "raw", "2026/demo/tomo_0001", np.random.default_rng(7), 6, (64, 64))
    done = run_cli("--output", tmp_path / "out", "--min-size", 16, "--chunk-projections", 4, source)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["analysis"] == "tomo_preview"
    assert summary["outputs"] == ["tomo_0001_preview.h5"]
    assert all((tmp_path / "out" / name).is_file() for name in summary["outputs"])
    assert summary["software"]["name"] == "beamflow.analyzer.analyses.tomo_preview"
    record = summary["parameters"]["files"][0]
    assert record["correction"] == "flat-dark"
    assert record["levels"] == [
        {"name": "level_1", "binning": 2, "angle_binning": 1, "shape": [6, 32, 32]},
        {"name": "level_2", "binning": 4, "angle_binning": 1, "shape": [6, 16, 16]},
    ]

    levels = levels_of(tmp_path / "out" / "tomo_0001_preview.h5")
    with h5py.File(source, "r") as f:
        theta = f["exchange/theta"][()]
    for level in levels.values():
        np.testing.assert_array_equal(level["theta"], theta)
        # Transmission through the phantom: between fully absorbed and the open beam (plus noise).
        assert level["data"].min() >= 0.0 and level["data"].max() < 1.2
        assert level["data"].mean() < 0.95
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_a_garbage_file_exits_3_naming_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk_scan.h5"
    junk.write_bytes(b"this is not HDF5\n" * 64)
    done = run_cli("--output", tmp_path / "out", junk)
    assert done.returncode == 3
    assert "junk_scan.h5" in done.stderr and "HDF5" in done.stderr
    assert done.stdout == ""


def test_a_truncated_file_exits_3_naming_the_file(tmp_path: Path) -> None:
    source = write_scan_832(tmp_path / "raw", "cut_0001", np.random.default_rng(8), 4, (64, 64))
    source.write_bytes(source.read_bytes()[:20000])
    done = run_cli("--output", tmp_path / "out", source)
    assert done.returncode == 3, done.stderr
    assert "cut_0001.h5" in done.stderr


def test_missing_projections_exit_3_with_the_option_to_pass(tmp_path: Path) -> None:
    source = tmp_path / "empty.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("entry/images", data=np.zeros((2, 8, 8)))
    done = run_cli("--output", tmp_path / "out", source)
    assert done.returncode == 3
    assert "empty.h5" in done.stderr and "/exchange/data" in done.stderr and "--dataset" in done.stderr

    found = run_cli("--output", tmp_path / "out", "--dataset", "/entry/images", source)
    assert found.returncode == 0, found.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("no scan here")
    assert run_cli("--output", tmp_path / "out", notes).returncode == 2
    assert run_cli("--output", tmp_path / "out", "--min-size", 0, notes).returncode == 2
    assert run_cli(notes).returncode == 2
