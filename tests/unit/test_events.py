"""The event contracts: ids, JSON round trips, refusal of bad messages, subjects and Nats-Msg-Ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from beamflow.common import subjects
from beamflow.common.errors import InvalidEvent, PermanentError
from beamflow.common.events import (
    EVENT_TYPES,
    Event,
    FileCopy,
    OriginalMessage,
    ScanAnalyzed,
    ScanArchived,
    ScanFailed,
    ScanFile,
    ScanIngested,
    ScanMoved,
    ScanNew,
    ScanPruned,
    describe_schema,
    parse_event,
    scan_id_for,
)

WHEN = datetime(2025, 3, 4, 12, 30, 1, 250000, tzinfo=UTC)
SCAN_ID = scan_id_for("bl733", "data733", "2025/sample_001")
COPY = FileCopy(path="2025/sample_001.edf", size=2048, checksum="ab12", algorithm="xxh3_128")


def _samples() -> dict[str, Event]:
    common: dict[str, Any] = {"scan_id": SCAN_ID, "beamline": "bl733", "occurred_at": WHEN}
    return {
        "new": ScanNew(
            **common,
            endpoint="data733",
            scan_path="2025/sample_001",
            files=[
                ScanFile(path="2025/sample_001.txt", size=120, mtime=1741091401.5),
                ScanFile(path="2025/sample_001.edf", size=2048, mtime=1741091401.75),
            ],
            detected_at=WHEN - timedelta(seconds=2),
            export_controlled=True,
        ),
        "moved": ScanMoved(
            **common,
            source_endpoint="data733",
            destination_endpoint="nersc733",
            step=1,
            files=[COPY],
            bytes=2048,
            seconds=1.5,
            copied=True,
            detected_at=WHEN,
            external_id="globus-task-1",
        ),
        "failed": ScanFailed(
            **common,
            service="mover",
            consumer="mover",
            reason="the copy did not verify",
            error_type="VerificationFailed",
            permanent=False,
            deliveries=6,
            original=OriginalMessage(
                subject="scan.new.bl733",
                data='{"scan_id": "x"}',
                headers={"Nats-Msg-Id": "x:new"},
                stream="SCANS",
                stream_seq=42,
            ),
        ),
        "archived": ScanArchived(
            **common,
            archive_endpoint="hpss",
            source_endpoint="nersc733",
            bundle="ALS-1234_2025-1.tar",
            members=["2025/sample_001.txt", "2025/sample_001.edf"],
            external_id="slurm-99",
        ),
        "analyzed": ScanAnalyzed(
            **common,
            compute_site="perlmutter",
            job_id="12345",
            exit_status=0,
            runtime_seconds=600.0,
            output_endpoint="data733",
            outputs=[COPY],
        ),
        "ingested": ScanIngested(**common, catalog="scicat", pid="20.500.12269/abc-def", dataset_kind="raw"),
        "pruned": ScanPruned(
            **common,
            endpoint="data733",
            check_endpoint="nersc733",
            files=["2025/sample_001.txt", "2025/sample_001.edf"],
            freed_bytes=2168,
        ),
    }


SAMPLES = _samples()
ALL_STAGES = sorted({*subjects.SCAN_STAGES, subjects.FAILED})


def test_there_is_a_sample_for_every_event_type() -> None:
    assert sorted(SAMPLES) == sorted(EVENT_TYPES) == ALL_STAGES
    assert len(ALL_STAGES) == 7
    for stage, event in SAMPLES.items():
        assert type(event) is EVENT_TYPES[stage]


# --- scan ids -------------------------------------------------------------------------------------------


def test_scan_id_is_stable() -> None:
    assert scan_id_for("bl733", "data733", "2025/sample_001") == SCAN_ID
    assert SCAN_ID.startswith("bl733-")
    assert subjects.is_token(SCAN_ID)


@pytest.mark.parametrize(
    "other",
    [
        ("bl832", "data733", "2025/sample_001"),
        ("bl733", "spot832", "2025/sample_001"),
        ("bl733", "data733", "2025/sample_002"),
        ("bl733", "data733", "2025/sample_001/"),
        ("bl733", "data7332025/sample_001", ""),
    ],
)
def test_scan_id_differs_by_beamline_endpoint_and_path(other: tuple[str, str, str]) -> None:
    assert scan_id_for(*other) != SCAN_ID


# --- JSON round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_every_event_round_trips_through_json(stage: str) -> None:
    event = SAMPLES[stage]
    data = event.to_json()
    assert isinstance(data, bytes)
    decoded = json.loads(data)
    assert decoded["schema_version"] == 1
    assert "stage" not in decoded
    again = parse_event(type(event), data)
    assert again == event
    assert again.occurred_at == WHEN and again.occurred_at.tzinfo is not None


def test_occurred_at_defaults_to_now_in_utc() -> None:
    before = datetime.now(UTC)
    event = ScanIngested(scan_id=SCAN_ID, beamline="bl733", catalog="scicat", pid="p/1", dataset_kind="raw")
    assert before <= event.occurred_at <= datetime.now(UTC)


def test_events_are_frozen() -> None:
    with pytest.raises(ValueError):
        SAMPLES["new"].beamline = "bl832"  # type: ignore[misc]


# --- refusal of bad messages ----------------------------------------------------------------------------


def _new_dict() -> dict[str, Any]:
    return json.loads(SAMPLES["new"].to_json())


def _refused(model: type[Event], data: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(model, data)
    assert isinstance(caught.value, PermanentError)
    return caught.value


@pytest.mark.parametrize("data", [b"{not json", b"", b"[]", b"null", b"\xff\xfe"])
def test_bad_json_is_invalid(data: bytes) -> None:
    assert "new event failed validation" in str(_refused(ScanNew, data))


@pytest.mark.parametrize("field", ["scan_id", "beamline", "endpoint", "scan_path", "files", "detected_at"])
def test_a_missing_field_is_invalid_and_named(field: str) -> None:
    raw = _new_dict()
    del raw[field]
    error = _refused(ScanNew, json.dumps(raw).encode())
    assert f"{field}: Field required" in str(error)


def test_a_missing_nested_field_is_named_with_its_path() -> None:
    raw = _new_dict()
    del raw["files"][1]["size"]
    assert "files.1.size: Field required" in str(_refused(ScanNew, json.dumps(raw).encode()))


def test_an_unknown_field_is_invalid() -> None:
    raw = _new_dict()
    raw["colour"] = "blue"
    assert "colour: Extra inputs" in str(_refused(ScanNew, json.dumps(raw).encode()))


def test_an_unknown_nested_field_is_invalid() -> None:
    raw = json.loads(SAMPLES["moved"].to_json())
    raw["files"][0]["owner"] = "me"
    assert "files.0.owner" in str(_refused(ScanMoved, json.dumps(raw).encode()))


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_an_unknown_schema_version_is_invalid(version: object) -> None:
    raw = _new_dict()
    raw["schema_version"] = version
    assert "schema_version" in str(_refused(ScanNew, json.dumps(raw).encode()))


@pytest.mark.parametrize("beamline", ["bl.733", "bl 733", "bl733.>", "*", ""])
def test_a_beamline_that_is_not_a_subject_token_is_invalid(beamline: str) -> None:
    raw = _new_dict()
    raw["beamline"] = beamline
    assert "beamline" in str(_refused(ScanNew, json.dumps(raw).encode()))


def test_an_endpoint_that_is_not_a_subject_token_is_invalid() -> None:
    raw = json.loads(SAMPLES["moved"].to_json())
    raw["destination_endpoint"] = "nersc.733"
    assert "destination_endpoint" in str(_refused(ScanMoved, json.dumps(raw).encode()))


def test_one_event_type_does_not_parse_as_another() -> None:
    _refused(ScanMoved, SAMPLES["new"].to_json())


@pytest.mark.parametrize(("field", "value"), [("size", -1), ("files", [])])
def test_constraints_are_enforced(field: str, value: object) -> None:
    raw = _new_dict()
    if field == "size":
        raw["files"][0]["size"] = value
    else:
        raw[field] = value
    _refused(ScanNew, json.dumps(raw).encode())


# --- subjects and message ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_subject_is_scan_stage_beamline(stage: str) -> None:
    event = SAMPLES[stage]
    assert event.subject() == f"scan.{stage}.bl733"
    assert event.event_type == f"scan.{stage}"
    assert subjects.beamline_of(event.subject()) == "bl733"


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_msg_id_is_deterministic(stage: str) -> None:
    event = SAMPLES[stage]
    later = event.model_copy(update={"occurred_at": WHEN + timedelta(hours=1)})
    assert later.msg_id() == event.msg_id()
    assert _samples()[stage].msg_id() == event.msg_id()


def test_msg_ids_differ_between_stages() -> None:
    ids = [event.msg_id() for event in SAMPLES.values()]
    assert len(set(ids)) == len(ids)


def test_scan_moved_msg_id_is_distinct_per_destination() -> None:
    moved = SAMPLES["moved"]
    assert isinstance(moved, ScanMoved)
    other = moved.model_copy(update={"destination_endpoint": "beegfs733", "step": 2})
    assert moved.msg_id() == f"{SCAN_ID}:moved:nersc733"
    assert other.msg_id() == f"{SCAN_ID}:moved:beegfs733"
    another_scan = moved.model_copy(update={"scan_id": scan_id_for("bl733", "data733", "2025/sample_002")})
    assert another_scan.msg_id() != moved.msg_id()


def test_scan_failed_without_scan_id_is_valid() -> None:
    raw = json.loads(SAMPLES["failed"].to_json())
    del raw["scan_id"]
    raw["original"] = {"subject": "scan.new.bl733", "data": "{not json"}
    failed = parse_event(ScanFailed, json.dumps(raw).encode())
    assert failed.scan_id is None
    assert failed.subject() == "scan.failed.bl733"
    assert failed.msg_id().startswith("failed:mover:")
    assert failed.msg_id() == parse_event(ScanFailed, json.dumps(raw).encode()).msg_id()
    raw["original"]["data"] = "{other"
    assert parse_event(ScanFailed, json.dumps(raw).encode()).msg_id() != failed.msg_id()


def test_scan_failed_msg_id_uses_the_stream_sequence_when_known() -> None:
    failed = SAMPLES["failed"]
    assert failed.msg_id() == "failed:SCANS:42:mover"


def test_scan_new_still_requires_a_scan_id() -> None:
    raw = _new_dict()
    raw["scan_id"] = None
    _refused(ScanNew, json.dumps(raw).encode())


# --- schema ---------------------------------------------------------------------------------------------


def test_describe_schema_covers_all_seven_stages() -> None:
    schema = describe_schema()
    assert sorted(schema) == sorted(f"scan.{stage}" for stage in ALL_STAGES)
    assert len(schema) == 7
    for name, model_schema in schema.items():
        properties = model_schema["properties"]
        assert {"schema_version", "scan_id", "beamline", "occurred_at"} <= set(properties), name
        assert properties["schema_version"].get("const") == 1 or properties["schema_version"].get("enum") == [1]
        assert model_schema.get("additionalProperties") is False, name
    assert "scan_id" not in schema["scan.failed"]["required"]
    assert "scan_id" in schema["scan.new"]["required"]
    json.dumps(schema)
