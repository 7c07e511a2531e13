"""Folding events into a scan's ledger record: each event once, whatever order and however often."""

from __future__ import annotations

from datetime import timedelta

from beamflow.common import subjects
from beamflow.common.events import (
    FileCopy,
    OriginalMessage,
    RetentionHold,
    ScanFailed,
    ScanFile,
    ScanMoved,
    ScanNew,
    ScanPruned,
    utcnow,
)
from beamflow.common.ledger import ScanRecord, fold

SCAN = "bl832-00000000000000aa"
COPY = FileCopy(path="a/scan.h5", size=10, checksum="ab" * 16, algorithm="xxh3-128")


def new() -> ScanNew:
    return ScanNew(
        scan_id=SCAN,
        beamline="bl832",
        endpoint="spot832",
        scan_path="a/scan",
        files=[ScanFile(path="a/scan.h5", size=10, mtime=1.0)],
        detected_at=utcnow(),
    )


def moved(destination: str = "data832") -> ScanMoved:
    return ScanMoved(
        scan_id=SCAN,
        beamline="bl832",
        source_endpoint="spot832",
        destination_endpoint=destination,
        step=1,
        files=[COPY],
        bytes=10,
        seconds=0.1,
        copied=True,
    )


def hold(expires_in: timedelta = timedelta(days=1), action: str = "placed") -> RetentionHold:
    return RetentionHold(
        scan_id=SCAN,
        beamline="bl832",
        endpoint="spot832",
        check_endpoint="data832",
        files=[COPY],
        expires_at=utcnow() + expires_in,
        action=action,  # type: ignore[arg-type]
    )


def apply_all(*steps: tuple[object, str]) -> ScanRecord:
    record: ScanRecord | None = None
    for event, subject in steps:
        record = fold(record, event, subject) or record  # type: ignore[arg-type]
    assert record is not None
    return record


def test_the_same_event_twice_is_folded_once() -> None:
    event = moved()
    record = fold(None, event, event.subject())
    assert record is not None
    assert fold(record, event, event.subject()) is None
    assert [h.what for h in record.history] == ["copy data832"]


def test_a_scan_goes_from_detected_to_held_to_pruned() -> None:
    record = apply_all((new(), "scan.new.bl832"), (moved(), "scan.moved.bl832"))
    assert record.state == "copied"
    placed = hold()
    held = fold(record, placed, placed.subject())
    assert held is not None and held.state == "held"
    assert held.holds["spot832"].state == "pending"
    fired = fold(held, placed, placed.expiry_subject())
    assert fired is not None and fired.holds["spot832"].state == "expired"
    pruned = ScanPruned(
        scan_id=SCAN,
        beamline="bl832",
        endpoint="spot832",
        check_endpoint="data832",
        files=["a/scan.h5"],
        freed_bytes=10,
    )
    done = fold(fired, pruned, pruned.subject())
    assert done is not None and done.state == "pruned"
    assert done.prunes["spot832"].freed_bytes == 10
    assert done.copies["data832"].files[0].checksum == COPY.checksum
    assert [h.what for h in done.history] == [
        "detected",
        "copy data832",
        "hold spot832",
        "hold spot832",
        "pruned spot832",
    ]


def test_a_stale_expiry_does_not_expire_an_extended_hold() -> None:
    first = hold(timedelta(seconds=1))
    extended = hold(timedelta(days=30), action="extended")
    record = apply_all((first, first.subject()), (extended, extended.subject()), (first, first.expiry_subject()))
    assert record.holds["spot832"].state == "pending"
    assert record.holds["spot832"].last_action == "extended"


def test_a_failure_is_recorded_with_its_reason_and_a_later_success_clears_the_state() -> None:
    failed = ScanFailed(
        scan_id=SCAN,
        beamline="bl832",
        service="pruner",
        consumer="pruner-hold-expired",
        reason="3: a/scan.h5 on data832 is missing",
        error_type="PruneRefused",
        permanent=True,
        deliveries=1,
        original=OriginalMessage(subject=f"{subjects.HOLD}.expired.bl832.{SCAN}.spot832", data="{}"),
    )
    record = apply_all((new(), "scan.new.bl832"), (failed, failed.subject()))
    assert record.state == "failed"
    assert record.failures[0].reason == "3: a/scan.h5 on data832 is missing"
    later = fold(record, moved("nersc832"), "scan.moved.bl832")
    assert later is not None and later.state == "copied"
