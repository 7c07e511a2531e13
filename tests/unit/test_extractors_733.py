"""The 7.3.3 SAXS/WAXS extractor, its EDF reader and `.txt` parser, and the realistic 7.3.3 test-data writer.

Files written by the detector simulator's `write_scan_733` are read back by the extractor and cross-checked
with fabio (an independent EDF implementation), in both directions. Ownership comes from the headers or the
operator's mapping, never from constants; damaged-but-readable files give results with warnings; unreadable
ones raise `UnreadableScan` naming the file.
"""

from __future__ import annotations

import io
import json
import pickle
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import fabio
import numpy as np
import pytest
from beamflow.common.edf import encode_edf, read_edf
from beamflow.common.simulate import write_scan_733
from beamflow.ingestor.extractors import (
    EXTRACTORS,
    Extracted,
    HeaderKeys,
    ProposalEntry,
    ProposalMapping,
    UnknownTechnique,
    UnreadableScan,
    extract,
    extract_733,
)
from beamflow.ingestor.extractors.saxs733 import convert_value, parse_txt, split_entry
from fabio.edfimage import EdfImage
from PIL import Image

LA = ZoneInfo("America/Los_Angeles")
MAPPING = ProposalMapping(instrument="ALS 7.3.3")


WHEN = datetime(2026, 3, 14, 12, 30, 1)  # beamline local time, as the headers write it


def scan(tmp_path: Path, stem: str = "agb_cal_2m_00001", **kwargs: object) -> list[Path]:
    options: dict[str, object] = {
        "proposal": "ALS-11234",
        "pi": "Greg Su",
        "shape": (256, 256),
        "when": WHEN,
        **kwargs,
    }
    rng = np.random.default_rng(5)
    return write_scan_733(tmp_path / "2026" / "proposal_a", stem, rng, **options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- read back


def test_a_written_scan_reads_back_with_every_catalogue_field(tmp_path: Path) -> None:
    files = scan(
        tmp_path,
        owner="mlandsman",
        email="mlandsman@example.org",
        sample="AgB calibrant",
        extra_header={"Energy": "10000.0 eV"},  # a number with its unit, as some headers write it
    )
    assert [p.name for p in files] == ["agb_cal_2m_00001.txt", "agb_cal_2m_00001.edf"]

    result = extract_733(files, MAPPING)

    assert result.warnings == []
    assert result.skip_reason is None
    assert result.proposal == "ALS-11234"
    assert result.owner_group == "ALS-11234"
    assert result.principal_investigator == "Greg Su"
    assert result.owner == "mlandsman"
    assert result.owner_email == "mlandsman@example.org"
    assert result.sample == "AgB calibrant"
    assert result.dataset_name == "agb_cal_2m_00001"
    assert result.instrument == "ALS 7.3.3"
    assert result.data_format == "EDF"
    # The EDF Date, in the beamline's clock.
    assert result.creation_time == datetime(2026, 3, 14, 12, 30, 1, tzinfo=LA)
    assert {"agb", "cal", "2m", "00001"} <= set(result.keywords)

    md = result.scientific_metadata
    assert md["files"] == ["agb_cal_2m_00001.edf", "agb_cal_2m_00001.txt"]
    header = md["txt_header"]
    assert header["Time"] == "12:30:01"  # a value with colons of its own
    assert header["Exposure time"]["unit"] == "s"
    assert header["Energy"]["unit"] == "eV"
    assert header["Scan Number"].startswith("0")  # an identifier keeps its leading zeros
    assert "Acquired at 12:30:01" in md["txt_unparsed_lines"]
    assert "ALS Beamline 7.3.3 SAXS/WAXS/GISAXS" in md["txt_unparsed_lines"]
    assert not any(key.startswith("Acquired at") for key in header)
    assert md["edf_header"]["Dim_1"] == 256 and md["edf_header"]["DataType"] == "UnsignedShort"
    assert md["image"] == {"file": "agb_cal_2m_00001.edf", "dtype": "uint16", "shape": [256, 256]}
    assert md["frames"] == 1

    assert result.thumbnail_png is not None
    thumb = Image.open(io.BytesIO(result.thumbnail_png))
    assert thumb.format == "PNG" and thumb.size == (256, 256)


def test_the_result_is_json_safe_and_round_trips(tmp_path: Path) -> None:
    result = extract_733(scan(tmp_path, malformed=True), MAPPING)
    json.dumps(result.scientific_metadata, allow_nan=False)
    again = Extracted.model_validate_json(result.model_dump_json())
    assert again == result


def test_registry_dispatches_by_technique_and_names_the_known_ones(tmp_path: Path) -> None:
    files = scan(tmp_path)
    assert set(EXTRACTORS) == {"saxs-waxs-733", "tomography-832"}
    assert extract("saxs-waxs-733", [str(f) for f in files], MAPPING).proposal == "ALS-11234"
    with pytest.raises(UnknownTechnique) as caught:
        extract("saxs-733", files, MAPPING)
    assert "saxs-waxs-733" in str(caught.value) and "tomography-832" in str(caught.value)
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


def test_several_frames_share_one_edf_and_every_edf_is_listed(tmp_path: Path) -> None:
    files = scan(tmp_path, frames=3)
    extra = files[0].parent / "agb_cal_2m_00001_b.edf"
    extra.write_bytes(encode_edf([np.ones((8, 8), np.uint16)], {"Title": "b"}))

    result = extract_733([*files, extra], MAPPING)

    md = result.scientific_metadata
    assert md["frames"] == 4
    assert [h["file"] for h in md["edf_headers"]] == ["agb_cal_2m_00001.edf", "agb_cal_2m_00001_b.edf"]
    assert [h["Title"] for h in md["edf_headers"]] == ["agb_cal_2m_00001", "b"]
    assert md["image"]["file"] == "agb_cal_2m_00001.edf"  # thumbnail from the first image
    assert result.thumbnail_png is not None


# ------------------------------------------------------------------------------- EDF cross-checks


@pytest.mark.parametrize(
    ("dtype", "byte_order"),
    [
        ("uint16", "LowByteFirst"),
        ("uint16", "HighByteFirst"),
        ("int32", "LowByteFirst"),
        ("uint32", "HighByteFirst"),
        ("float32", "LowByteFirst"),
        ("float64", "HighByteFirst"),
        ("uint8", "LowByteFirst"),
        ("int16", "HighByteFirst"),
    ],
)
def test_fabio_reads_our_edf_with_the_same_pixels_and_header(tmp_path: Path, dtype: str, byte_order: str) -> None:
    files = scan(tmp_path, frames=2, shape=(40, 56), dtype=dtype, byte_order=byte_order)
    edf = files[1]
    assert (edf.stat().st_size - 2 * 40 * 56 * np.dtype(dtype).itemsize) % 512 == 0  # headers padded to 512

    ours = read_edf(edf)
    with fabio.open(str(edf)) as theirs:
        assert theirs.nframes == ours.frames == 2
        assert ours.data is not None
        assert theirs.data.dtype == ours.data.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(theirs.data, ours.data)
        assert {k: v for k, v in theirs.header.items() if k in ours.header} == ours.header
        assert set(ours.header) <= set(theirs.header)
    assert ours.warnings == []


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64", "int8"])
def test_our_reader_reads_an_edf_written_by_fabio(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(3)
    first = (rng.normal(100, 30, size=(33, 47))).astype(dtype)
    second = (first * 2).astype(dtype)
    image = EdfImage(data=first, header={"Title": "kapton_ctrl", "Proposal": "ALS-1", "count_time": "1.5"})
    image.append_frame(data=second, header={"Title": "frame2"})
    path = tmp_path / "by_fabio.edf"
    image.write(str(path))

    ours = read_edf(path)

    assert ours.frames == 2
    assert ours.data is not None
    np.testing.assert_array_equal(ours.data, first)
    assert ours.header["Title"] == "kapton_ctrl" and ours.header["count_time"] == "1.5"
    assert ours.warnings == []


def test_extractor_reads_a_scan_whose_image_fabio_wrote(tmp_path: Path) -> None:
    txt = tmp_path / "sample_007.txt"
    txt.write_text("Proposal = ALS-9\nPI: Ada Quill\nEmail: aquill@example.org\nDate: 2025-11-02\nTime: 08:15:00\n")
    EdfImage(data=np.full((16, 16), 7, np.uint16), header={"Title": "sample 7"}).write(str(tmp_path / "sample_007.edf"))

    result = extract_733([txt, tmp_path / "sample_007.edf"], MAPPING)

    assert (result.proposal, result.principal_investigator, result.sample) == ("ALS-9", "Ada Quill", "sample 7")
    # No Date in fabio's header: the .txt date and time, in the beamline's clock.
    assert result.creation_time == datetime(2025, 11, 2, 8, 15, tzinfo=LA)
    assert result.thumbnail_png is not None


# ---------------------------------------------------------------------------------- .txt parsing


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Time: 12:30:01", ("Time", "12:30:01")),
        ("Acquired at 12:30:01", None),
        ("Acquired at 9:05 AM: 1 s", ("Acquired at 9:05 AM", "1 s")),
        ("Start = 2026-03-14 12:30:01", ("Start", "2026-03-14 12:30:01")),
        ("Date: 2026-03-14T12:30:01", ("Date", "2026-03-14T12:30:01")),
        ("Sample Name: agb: calibrant", ("Sample Name", "agb: calibrant")),
        ("Energy = 10000.0 eV", ("Energy", "10000.0 eV")),
        ("Ratio: 1:2", ("Ratio", "1:2")),
        ("Path: C:\\data\\733\\agb.edf", ("Path", "C:\\data\\733\\agb.edf")),
        ("C:\\data\\733\\agb.edf", None),
        ("url = http://beamline/733", ("url", "http://beamline/733")),
        ("ALS Beamline 7.3.3 SAXS/WAXS/GISAXS", None),
        (":::", None),
        ("= orphan value", None),
        ("Motors: x=1, y=2", ("Motors", "x=1, y=2")),
        ("Empty:", ("Empty", "")),
    ],
)
def test_header_lines_split_on_the_first_real_delimiter(line: str, expected: tuple[str, str] | None) -> None:
    assert split_entry(line) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12),
        ("-3", -3),
        ("00485", "00485"),
        ("1.5e3", 1500.0),
        ("-0.25", -0.25),
        ("1.000 s", {"value": 1.0, "unit": "s"}),
        ("25 \u00b0C", {"value": 25, "unit": "\u00b0C"}),
        ("3512.40 mm", {"value": 3512.4, "unit": "mm"}),
        ("Pilatus 2M", "Pilatus 2M"),
        ("2 of 5 done", "2 of 5 done"),
        ("NaN", "NaN"),
    ],
)
def test_values_become_numbers_and_units_only_when_they_are(text: str, expected: object) -> None:
    assert convert_value(text) == expected


def test_the_parser_keeps_repeats_drops_junk_and_never_raises() -> None:
    text = "Detector: Pilatus 2M\r\n\r\n\x00\x07garbage\r\nDetector = Pilatus 300k\r\n   \r\nI0: 1.2\n:\n"

    header = parse_txt(text)

    assert header.entries == {"Detector": ["Pilatus 2M", "Pilatus 300k"], "I0": 1.2}
    assert header.unparsed == ["garbage", ":"]
    assert any("control" in w for w in header.warnings)
    assert any("repeated" in w and "Detector" in w for w in header.warnings)


# ------------------------------------------------------------------------------------ skip rules


@pytest.mark.parametrize("stem", ["autoexpose_00001", "agb_beamstop_test_2m", "AutoExpose_7"])
def test_alignment_shots_are_skipped_without_reading_the_files(tmp_path: Path, stem: str) -> None:
    # Empty files: reading them would raise, so a result proves they were not read.
    txt, edf = tmp_path / f"{stem}.txt", tmp_path / f"{stem}.edf"
    txt.write_bytes(b"")
    edf.write_bytes(b"")

    result = extract_733([txt, edf], MAPPING)

    assert result.skip_reason is not None and stem in result.skip_reason
    assert result.thumbnail_png is None and result.proposal is None


def test_skip_patterns_are_configurable(tmp_path: Path) -> None:
    files = scan(tmp_path, stem="agb_alignment_01")
    assert extract_733(files, MAPPING).skip_reason is None
    custom = ProposalMapping(skip_patterns=["alignment"])
    assert extract_733(files, custom).skip_reason is not None


# -------------------------------------------------------------------------------------- ownership


def test_people_come_from_the_header_not_from_constants(tmp_path: Path) -> None:
    one = extract_733(scan(tmp_path / "1", proposal="ALS-1", pi="Ada Quill", owner="aq", email="aq@x.org"), MAPPING)
    two = extract_733(scan(tmp_path / "2", proposal="ALS-2", pi="Ben Okafor", owner="bo", email="bo@y.org"), MAPPING)

    assert (one.proposal, one.principal_investigator, one.owner, one.owner_email) == (
        "ALS-1",
        "Ada Quill",
        "aq",
        "aq@x.org",
    )
    assert (two.proposal, two.principal_investigator, two.owner, two.owner_email) == (
        "ALS-2",
        "Ben Okafor",
        "bo",
        "bo@y.org",
    )


def test_missing_people_are_warnings_and_none_not_a_crash_or_a_default(tmp_path: Path) -> None:
    files = scan(tmp_path, proposal=None, pi=None, owner=None, email=None)

    result = extract_733(files, MAPPING)

    assert (result.proposal, result.principal_investigator, result.owner, result.owner_email) == (None,) * 4
    assert result.owner_group is None and result.access_groups == []
    text = "\n".join(result.warnings)
    assert "no proposal" in text and "no principal investigator" in text
    assert "no owner e-mail" in text and "no owner in" in text
    assert result.thumbnail_png is not None  # the rest of the record is still there


def test_the_owner_falls_back_to_the_pi(tmp_path: Path) -> None:
    result = extract_733(scan(tmp_path, owner=None), MAPPING)
    assert result.owner == result.principal_investigator == "Greg Su"


def test_the_mapping_fills_in_what_the_header_lacks(tmp_path: Path) -> None:
    files = scan(tmp_path, proposal=None, pi=None, owner=None, email=None)
    mapping = ProposalMapping(
        default_proposal="ALS-STAFF-733",
        proposals={
            "ALS-STAFF-733": ProposalEntry(
                pi="Chenhui Zhu", owner_email="staff733@example.org", owner_group="bl733-staff", access_groups=["733"]
            )
        },
        access_groups=["ingestor"],
        instrument="ALS 7.3.3",
    )

    result = extract_733(files, mapping)

    assert result.proposal == "ALS-STAFF-733"
    assert result.principal_investigator == result.owner == "Chenhui Zhu"
    assert result.owner_email == "staff733@example.org"
    assert result.owner_group == "bl733-staff"
    assert result.access_groups == ["ingestor", "733"]
    assert result.warnings == []


def test_the_mapping_wins_over_the_header_and_says_so(tmp_path: Path) -> None:
    files = scan(tmp_path, proposal="ALS-11234", pi="G. Su")
    mapping = ProposalMapping(proposals={"ALS-11234": ProposalEntry(pi="Gregory Su")}, instrument="ALS 7.3.3")

    result = extract_733(files, mapping)

    assert result.principal_investigator == "Gregory Su"
    assert result.owner_group == "ALS-11234"
    assert any("'G. Su'" in w and "'Gregory Su'" in w for w in result.warnings)


def test_a_proposal_missing_from_a_non_empty_mapping_is_reported(tmp_path: Path) -> None:
    mapping = ProposalMapping(proposals={"ALS-1": ProposalEntry(pi="X")}, instrument="ALS 7.3.3")
    result = extract_733(scan(tmp_path, proposal="ALS-404"), mapping)
    assert result.proposal == "ALS-404" and result.principal_investigator == "Greg Su"
    assert any("ALS-404" in w and "not in the proposal mapping" in w for w in result.warnings)


def test_header_keys_are_configurable_and_loosely_matched(tmp_path: Path) -> None:
    files = scan(
        tmp_path,
        proposal=None,
        pi=None,
        extra_header={"esaf_number": "ESAF-77", "principal-investigator": "Dana Ruiz"},
    )
    keys = HeaderKeys(proposal=["ESAF Number"], pi=["Principal Investigator"])

    result = extract_733(files, ProposalMapping(header_keys=keys, instrument="ALS 7.3.3"))

    assert (result.proposal, result.principal_investigator) == ("ESAF-77", "Dana Ruiz")


def test_header_values_are_cleaned_and_none_means_missing(tmp_path: Path) -> None:
    files = scan(tmp_path, pi=" 'Ada Quill', ", email="NONE", proposal="none")
    result = extract_733(files, MAPPING)
    assert result.principal_investigator == "Ada Quill"
    assert result.owner_email is None and result.proposal is None


def test_a_bad_email_is_a_warning(tmp_path: Path) -> None:
    result = extract_733(scan(tmp_path, email="mrl at lbl"), MAPPING)
    assert result.owner_email is None
    assert any("not an e-mail address" in w for w in result.warnings)


# ----------------------------------------------------------------------------------- creation time


def test_creation_time_falls_back_to_the_txt_date_and_time_in_the_configured_zone(tmp_path: Path) -> None:
    files = scan(tmp_path, extra_edf_header={"Date": "n/a"}, when=datetime(2025, 1, 2, 3, 4, 5))
    mapping = ProposalMapping(timezone="Europe/Berlin", instrument="ALS 7.3.3")

    result = extract_733(files, mapping)

    assert result.creation_time == datetime(2025, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Berlin"))


def test_a_header_without_a_usable_date_leaves_creation_time_unset(tmp_path: Path) -> None:
    files = scan(tmp_path, extra_edf_header={"Date": "soon"}, extra_header={"Date": None, "Time": None})
    result = extract_733(files, MAPPING)
    assert result.creation_time is None
    assert any("'soon'" in w for w in result.warnings)
    assert any("creation time unset" in w for w in result.warnings)


def test_an_unknown_time_zone_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ProposalMapping(timezone="Mars/Olympus_Mons")


# ----------------------------------------------------------------------------- damaged but readable


def test_a_malformed_scan_still_gives_a_result_with_warnings(tmp_path: Path) -> None:
    result = extract_733(scan(tmp_path, malformed=True), MAPPING)

    assert result.proposal == "ALS-11234" and result.principal_investigator == "Greg Su"
    assert result.thumbnail_png is not None
    text = "\n".join(result.warnings)
    assert "Size = 12" in text  # the EDF header lies about the pixel bytes
    assert "not a multiple of 512" in text
    assert "repeated" in text and "control or binary" in text and "latin-1" in text
    header = result.scientific_metadata["txt_header"]
    assert header["Detector"] == ["Pilatus 2M", "Pilatus 300k WAXS"]
    assert header["Temperature"] == {"value": 25, "unit": "\u00b0C"}


def test_only_a_header_or_only_an_image_is_enough(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path)
    only_txt = extract_733([txt], MAPPING)
    assert only_txt.proposal == "ALS-11234" and only_txt.thumbnail_png is None
    assert any("no .edf image" in w for w in only_txt.warnings)
    only_edf = extract_733([edf], MAPPING)
    assert only_edf.sample == "agb_cal_2m_00001" and only_edf.thumbnail_png is not None
    assert only_edf.proposal is None and any("no .txt header" in w for w in only_edf.warnings)


# ---------------------------------------------------------------------------------------- unreadable


def _assert_unreadable(files: list[Path], culprit: Path, reason: str) -> None:
    with pytest.raises(UnreadableScan) as caught:
        extract_733(files, MAPPING)
    assert caught.value.path == str(culprit)
    assert culprit.name in str(caught.value) and reason in str(caught.value)
    assert caught.value.remedy  # the operator is told what to do
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


def test_a_truncated_edf_is_unreadable(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path)
    edf.write_bytes(edf.read_bytes()[:-1000])
    _assert_unreadable([txt, edf], edf, "truncated")


def test_a_truncated_later_frame_is_unreadable(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path, frames=3)
    edf.write_bytes(edf.read_bytes()[:-10])
    _assert_unreadable([txt, edf], edf, "frame 2")


def test_an_edf_cut_inside_its_header_is_unreadable(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path)
    edf.write_bytes(edf.read_bytes()[:100])
    _assert_unreadable([txt, edf], edf, "truncated")


@pytest.mark.parametrize("which", [0, 1])
def test_an_empty_file_is_unreadable(tmp_path: Path, which: int) -> None:
    files = scan(tmp_path)
    files[which].write_bytes(b"")
    _assert_unreadable(files, files[which], "empty")


def test_something_that_is_not_edf_is_unreadable(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path)
    edf.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    _assert_unreadable([txt, edf], edf, "not an EDF file")


def test_an_edf_without_dimensions_is_unreadable(tmp_path: Path) -> None:
    txt, edf = scan(tmp_path)
    edf.write_bytes(edf.read_bytes().replace(b"Dim_1 = 256 ;", b"Dim_x = 256 ;"))
    _assert_unreadable([txt, edf], edf, "Dim_1")


def test_a_scan_without_header_or_image_is_unreadable(tmp_path: Path) -> None:
    other = tmp_path / "notes.dat"
    other.write_text("x")
    _assert_unreadable([other], other, "no .txt header or .edf image")


def test_an_unpadded_edf_header_still_reads(tmp_path: Path) -> None:
    image = np.arange(20, dtype=np.uint16).reshape(4, 5)
    path = tmp_path / "tight.edf"
    path.write_bytes(encode_edf([image, image + 1], {"Title": "t"}, pad=False))
    ours = read_edf(path)
    assert ours.frames == 2 and ours.data is not None
    np.testing.assert_array_equal(ours.data, image)
    assert any("not a multiple of 512" in w for w in ours.warnings)
