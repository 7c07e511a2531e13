"""The 8.3.2 tomography extractor and the realistic DX (HDF5) test-data writer (the detector simulator's).

The writer's layout is checked with h5py directly (what a DX reader elsewhere would see), then read back by
the extractor; every number the extractor reports is compared with h5py's own reading of the file.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from beamflow.common.simulate import write_scan_832
from beamflow.ingestor.extractors import (
    Extracted,
    ProposalEntry,
    ProposalMapping,
    UnreadableScan,
    extract,
    extract_832,
    thumbnail_png,
)
from beamflow.ingestor.extractors.base import clean_email, clean_text
from beamflow.ingestor.extractors.tomo832 import sample_series
from PIL import Image

START = datetime(2026, 3, 14, 19, 30, 1, tzinfo=UTC)


def dx(tmp_path: Path, name: str = "20260314_193001_MSB_Book1_Proj77", **kwargs: object) -> Path:
    options: dict[str, object] = {
        "pi": "Jane Doe",
        "proposal": "ALS-12345",
        "email": " 'jdoe@example.org', ",  # with the quotes and comma the beamline writes
        "experimenter": "Sam Experimenter",
        "projections": 16,
        "shape": (128, 160),
        "when": START,
        **kwargs,
    }
    rng = np.random.default_rng(5)
    return write_scan_832(tmp_path, f"raw/{name}", rng, **options)  # type: ignore[arg-type]


def count_scalars(f: h5py.File) -> int:
    found: list[str] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and item.size == 1 and not name.startswith("measurement/sample"):
            found.append(name)

    f.visititems(visit)
    return len(found)


# --------------------------------------------------------------------------------- the writer (h5py)


def test_the_writer_produces_the_dx_layout(tmp_path: Path) -> None:
    path = dx(tmp_path, projections=12, shape=(48, 64))

    with h5py.File(path, "r") as f:
        for name in (
            "/measurement/sample/experiment/pi",
            "/measurement/sample/experiment/proposal",
            "/measurement/sample/experiment/beamline",
            "/measurement/sample/experiment/experiment_lead",
            "/measurement/sample/experimenter/email",
            "/measurement/sample/experimenter/name",
            "/measurement/sample/file_name",
            "/measurement/instrument/instrument_name",
        ):
            assert isinstance(f[name], h5py.Dataset), name
        # Strings are byte strings, mostly 1-element arrays; the e-mail carries the beamline's quotes and comma.
        assert f["/measurement/sample/experiment/pi"].dtype.kind == "S"
        assert f["/measurement/sample/experiment/pi"].shape == (1,)
        assert f["/measurement/sample/experimenter/email"][0] == b" 'jdoe@example.org', "
        assert f["/measurement/sample/experiment/beamline"][()] == b" '8.3.2', "
        assert f["/measurement/instrument/detector/pixel_size"].shape == (1,)
        assert clean_text(f["/measurement/instrument/detector/pixel_size"].attrs["units"]) == "um"
        assert count_scalars(f) >= 45

        data = f["/exchange/data"]
        assert data.shape == (12, 48, 64) and data.dtype == np.uint16
        assert f["/exchange/data_white"].shape[1:] == (48, 64) and f["/exchange/data_white"].dtype == np.uint16
        assert f["/exchange/data_dark"].shape[1:] == (48, 64)
        np.testing.assert_allclose(f["/exchange/theta"][()], np.linspace(0, 180, 12, endpoint=False))
        for series in ("source/current", "monochromator/energy", "detector/exposure_time", "time_stamp"):
            assert f[f"/measurement/instrument/{series}"].shape == (12,), series

        # A phantom, not noise: the sample absorbs (projections darker than the flat field), unevenly.
        projection = data[0].astype(np.float64)
        flat = f["/exchange/data_white"][0].astype(np.float64)
        assert projection.mean() < 0.9 * flat.mean()
        assert projection.std() > 0.1 * projection.mean()
        assert f["/exchange/data_dark"][()].mean() < 200


def test_the_writer_is_deterministic(tmp_path: Path) -> None:
    one = dx(tmp_path / "a", projections=3)
    two = dx(tmp_path / "b", projections=3)
    with h5py.File(one, "r") as f, h5py.File(two, "r") as g:
        np.testing.assert_array_equal(f["/exchange/data"][()], g["/exchange/data"][()])


# ------------------------------------------------------------------------------------ read back


def test_a_written_scan_reads_back_with_every_catalogue_field(tmp_path: Path) -> None:
    path = dx(tmp_path, sample="MSB Book1 cell 3")

    result = extract_832([path])

    assert result.warnings == []
    assert result.principal_investigator == result.owner == "Jane Doe"  # Owner = PI
    assert result.proposal == result.owner_group == "ALS-12345"  # ownerGroup = proposal
    assert result.owner_email == "jdoe@example.org"  # quotes and comma stripped
    assert result.access_groups == ["8.3.2"]
    assert result.instrument == "ALS 8.3.2 micro-tomography"
    assert result.sample == "MSB Book1 cell 3"
    assert result.dataset_name == "20260314_193001_MSB_Book1_Proj77"
    assert result.description == "20260314 193001 msb book1 proj77"
    assert result.creation_time == START
    assert result.data_format == "DX" and result.skip_reason is None
    assert extract("tomography-832", [path]).model_dump() == result.model_dump()


def test_parameters_series_and_images_match_what_h5py_reads(tmp_path: Path) -> None:
    path = dx(tmp_path, projections=16)

    result = extract_832([path])
    md = result.scientific_metadata

    parameters = md["parameters"]
    scalars = sum(len(group) for key, group in parameters.items() if not key.startswith("/measurement/sample"))
    assert scalars >= 45
    assert parameters["/measurement/instrument/detector"]["pixel_size"] == {"value": 0.65, "unit": "um"}
    assert parameters["/measurement/instrument/detector"]["model"] == "PCO.edge 5.5"
    assert parameters["/process/acquisition/rotation"]["num_angles"] == 16
    assert parameters["/measurement/instrument/source"]["beamline"] == "8.3.2"

    with h5py.File(path, "r") as f:
        current = f["/measurement/instrument/source/current"][()]
        sampled = md["data_sample"]["/measurement/instrument/source/current"]
        assert sampled["count"] == 16 and sampled["unit"] == "mA"
        assert sampled["first"] == current[0] and sampled["last"] == current[-1]
        assert sampled["min"] == pytest.approx(current.min()) and sampled["max"] == pytest.approx(current.max())
        assert sampled["mean"] == pytest.approx(current.mean())
        assert len(sampled["samples"]) == 10
        assert sampled["samples"] == current[sampled["sample_indices"]].tolist()
        assert sampled["sample_indices"][0] == 0 and sampled["sample_indices"][-1] == 15
        assert set(md["data_sample"]) >= {
            "/measurement/instrument/monochromator/energy",
            "/measurement/instrument/detector/exposure_time",
            "/measurement/instrument/time_stamp",
        }
        first_projection = f["/exchange/data"][0]

    exchange = md["exchange"]
    assert exchange["data"] == {"shape": [16, 128, 160], "dtype": "uint16"}
    assert exchange["theta"]["count"] == 16 and exchange["theta"]["unit"] == "deg"
    assert exchange["data_white"]["shape"][0] == 2 and exchange["data_dark"]["dtype"] == "uint16"

    # The thumbnail is the first projection's.
    assert result.thumbnail_png == thumbnail_png(first_projection, percentiles=(0.1, 99.9))
    thumb = Image.open(io.BytesIO(result.thumbnail_png))
    assert thumb.size == (160, 128) and thumb.mode == "L"

    json.dumps(md, allow_nan=False)
    assert Extracted.model_validate_json(result.model_dump_json()) == result


def test_series_sampling_is_even_and_handles_short_nan_and_text() -> None:
    long = sample_series(np.arange(1000, dtype=np.float64))
    assert long["sample_indices"] == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert (long["first"], long["last"], long["min"], long["max"], long["mean"]) == (0.0, 999.0, 0.0, 999.0, 499.5)
    short = sample_series(np.array([3, 1, 2]))
    assert short["samples"] == [3, 1, 2] and short["count"] == 3
    holes = sample_series(np.array([1.0, np.nan, 3.0, np.inf]))
    assert holes["non_finite"] == 2 and holes["mean"] == 2.0 and holes["max"] == 3.0
    assert json.loads(json.dumps(Extracted(dataset_name="x", scientific_metadata={"s": holes}).scientific_metadata))
    text = sample_series(np.array([b"12:00:01", b"12:00:02"]))
    assert text["first"] == "12:00:01" and text["samples"] == ["12:00:01", "12:00:02"]
    assert sample_series(np.array([], dtype=np.float64)) == {"count": 0}


# ------------------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b" '8.3.2', ", "8.3.2"),
        (b"'Jane Doe',", "Jane Doe"),
        (b"b'Jane Doe'", "Jane Doe"),
        (b'"ALS-12345"', "ALS-12345"),
        (b"  Jane   Doe ", "Jane Doe"),
        (b"NONE", None),
        (b"none", None),
        (b"None", None),
        (b"", None),
        (b"  ", None),
        (b"'',", None),
        (b"Na\x00\x00", "Na"),  # sodium is not "n/a"; NUL padding from fixed-length strings goes
        (np.array([b"x"]), "x"),
        (np.bytes_(b"y"), "y"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
def test_strings_are_cleaned_and_none_means_missing(raw: object, expected: str | None) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "address", "problem"),
    [
        (b" 'jdoe@example.org', ", "jdoe@example.org", None),
        (b"jdoe@example.org,", "jdoe@example.org", None),
        (b"mailto:jdoe@example.org", "jdoe@example.org", None),
        (b"jdoe@example.org, ann@example.org", "jdoe@example.org", "several"),
        (b"NONE", None, "NONE"),
        (b"jdoe at example", None, "not an e-mail"),
        (None, None, "no e-mail"),
    ],
)
def test_emails_are_cleaned(raw: object, address: str | None, problem: str | None) -> None:
    found, why = clean_email(raw)
    assert found == address
    assert (why is None) if problem is None else (why is not None and problem in why)


# -------------------------------------------------------------------------- missing or malformed fields


def test_a_malformed_file_gives_a_result_with_warnings(tmp_path: Path) -> None:
    path = dx(tmp_path, malformed=True)

    result = extract_832([path])

    assert result.principal_investigator == result.owner == "Jane Doe"  # " 'Jane Doe', " cleaned
    assert result.proposal is None and result.owner_group is None
    assert result.owner_email is None
    assert result.creation_time is None
    assert result.instrument == "ALS 8.3.2"  # from the beamline when instrument_name is missing
    assert result.thumbnail_png is not None
    text = "\n".join(result.warnings)
    assert "no proposal" in text
    assert "'NONE'" in text  # says what the file holds
    assert "/measurement/instrument/detector/temperature" in text  # NaN
    assert "16 projections" in text and "15 angles" in text
    assert "'sometime' is not a date" in text and "creation time unset" in text
    detector = result.scientific_metadata["parameters"]["/measurement/instrument/detector"]
    assert detector["temperature"] == {"value": None, "unit": "C"}
    json.dumps(result.scientific_metadata, allow_nan=False)


def test_without_a_pi_the_experimenter_owns_and_nothing_is_invented(tmp_path: Path) -> None:
    path = dx(tmp_path, pi=None, proposal=None, email=None)

    result = extract_832([path])

    assert result.principal_investigator is None and result.proposal is None and result.owner_email is None
    assert result.owner == "Sam Experimenter"
    text = "\n".join(result.warnings)
    assert "no principal investigator" in text and "experimenter" in text and "no owner e-mail" in text


def test_different_files_give_different_owners(tmp_path: Path) -> None:
    one = extract_832([dx(tmp_path / "1", pi="Ada Quill", proposal="ALS-1")])
    two = extract_832([dx(tmp_path / "2", pi="Ben Okafor", proposal="ALS-2")])
    assert (one.owner, one.owner_group) == ("Ada Quill", "ALS-1")
    assert (two.owner, two.owner_group) == ("Ben Okafor", "ALS-2")


def test_a_mapping_entry_adds_groups_and_overrides(tmp_path: Path) -> None:
    mapping = ProposalMapping(
        proposals={"ALS-12345": ProposalEntry(owner_group="p12345", access_groups=["bl832-staff"])},
        access_groups=["ingestor"],
    )
    result = extract_832([dx(tmp_path)], mapping)
    assert result.owner_group == "p12345"
    assert result.access_groups == ["ingestor", "bl832-staff", "8.3.2"]


def test_creation_time_falls_back_to_the_time_stamps(tmp_path: Path) -> None:
    path = dx(tmp_path)
    with h5py.File(path, "a") as f:
        del f["/process/acquisition/start_date"]
    assert extract_832([path]).creation_time == START


def test_hand_written_oddities_are_read(tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["/measurement/sample/experiment/pi"] = "Chen Wei"  # a variable-length str scalar
        f["/measurement/sample/experiment/proposal"] = np.array([[b"ALS-7"]])  # shape (1, 1)
        f["/measurement/sample/experimenter/email"] = np.array([b"cwei@example.org"])
        f["/measurement/instrument/detector/binning_x"] = np.int32(2)  # a true scalar
        f["/measurement/instrument/detector/roi"] = np.zeros((4, 2))  # 2-D: summarised by shape
        f["/measurement/instrument/detector/note"] = np.array([b"first", b"second", b"third"])
        f["/exchange/data"] = np.ones((2, 8, 8), dtype=np.uint16)

    result = extract_832([path])

    assert (result.principal_investigator, result.proposal, result.owner_email) == (
        "Chen Wei",
        "ALS-7",
        "cwei@example.org",
    )
    md = result.scientific_metadata
    assert md["parameters"]["/measurement/instrument/detector"]["binning_x"] == 2
    assert md["arrays"]["/measurement/instrument/detector/roi"] == {"shape": [4, 2], "dtype": "float64"}
    assert md["data_sample"]["/measurement/instrument/detector/note"]["last"] == "third"
    assert result.thumbnail_png is not None
    assert any("/process is missing" in w for w in result.warnings)


# ---------------------------------------------------------------------------------------- unreadable


def _assert_unreadable(files: list[Path], culprit: Path, reason: str) -> None:
    with pytest.raises(UnreadableScan) as caught:
        extract_832(files)
    assert caught.value.path == str(culprit)
    assert culprit.name in str(caught.value) and reason in str(caught.value)


def test_an_empty_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    path.write_bytes(b"")
    _assert_unreadable([path], path, "empty")


def test_a_file_that_is_not_hdf5_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "scan.h5"
    path.write_text("this is a text file that was named .h5\n" * 50)
    _assert_unreadable([path], path, "not an HDF5 file")


def test_a_truncated_hdf5_file_is_unreadable(tmp_path: Path) -> None:
    path = dx(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _assert_unreadable([path], path, "truncated or damaged")


def test_an_hdf5_file_in_another_layout_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "nexus.h5"
    with h5py.File(path, "w") as f:
        f["/entry/data/data"] = np.zeros((2, 2))
    _assert_unreadable([path], path, "not in the DX layout")


def test_a_scan_without_an_hdf5_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(b"II*\x00")
    _assert_unreadable([path], path, "no HDF5 file")
