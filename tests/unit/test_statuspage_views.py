"""The status page's timeline and views, from a ledger record folded from every kind of event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from beamflow.common.events import (
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
)
from beamflow.common.ledger import ScanRecord, fold
from beamflow.statuspage.pages import render, script_json
from beamflow.statuspage.timeline import timeline
from beamflow.statuspage.views import Problem, public_base, scan_detail

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FILE = FileCopy(path="2026/a.h5", size=10, checksum="ab" * 16, algorithm="xxh3-128")


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record_of_every_stage() -> ScanRecord:
    common = {"scan_id": "bl832-0123456789abcdef", "beamline": "bl832"}
    events = [
        ScanNew(
            **common,
            occurred_at=at(0),
            endpoint="spot",
            scan_path="2026/a",
            files=[ScanFile(path="2026/a.h5", size=10, mtime=0.0)],
            detected_at=at(0),
        ),
        ScanMoved(
            **common,
            occurred_at=at(2),
            source_endpoint="data",
            destination_endpoint="nersc",
            step=2,
            files=[FILE],
            bytes=10,
            seconds=0.1,
            copied=True,
        ),
        ScanMoved(
            **common,
            occurred_at=at(1),
            source_endpoint="spot",
            destination_endpoint="data",
            step=1,
            files=[FILE],
            bytes=10,
            seconds=0.1,
            copied=True,
        ),
        ScanIngested(**common, occurred_at=at(6), catalog="scicat", pid="pid/derived", dataset_kind="derived"),
        ScanIngested(**common, occurred_at=at(3), catalog="scicat", pid="pid/raw", dataset_kind="raw"),
        ScanArchived(
            **common,
            occurred_at=at(4),
            archive_endpoint="tape",
            source_endpoint="data",
            bundle="bl832/raw/p1/p1_2026-1.tar",
            members=["2026/a.h5"],
            files=[FILE],
            external_id="job-7",
        ),
        ScanAnalyzed(
            **common,
            occurred_at=at(5),
            compute_site="local",
            job_id="local-42",
            exit_status=0,
            runtime_seconds=1.0,
            output_endpoint="analysis",
            outputs=[],
        ),
        ScanPruned(
            **common, occurred_at=at(7), endpoint="spot", check_endpoint="data", files=["2026/a.h5"], freed_bytes=10
        ),
        ScanFailed(
            **common,
            occurred_at=at(8),
            service="pruner",
            consumer="pruner-hold",
            reason="copy changed",
            error_type="PruneRefused",
            permanent=True,
            deliveries=1,
            original=OriginalMessage(subject="hold.expired.bl832.x.data", data="{}"),
        ),
    ]
    record: ScanRecord | None = None
    for event in events:
        record = fold(record, event, event.subject())
    assert record is not None
    return record


def test_the_timeline_has_every_stage_in_pipeline_order_with_its_time() -> None:
    marks = timeline(record_of_every_stage())
    assert [(m.stage, m.label, m.at) for m in marks] == [
        ("detected", "detected", at(0)),
        ("copied", "data", at(1)),
        ("copied", "nersc", at(2)),
        ("catalogued", "raw", at(3)),
        ("catalogued", "derived", at(6)),
        ("archived", "tape", at(4)),
        ("analysed", "local", at(5)),
        ("pruned", "spot", at(7)),
        ("failed", "pruner", at(8)),
    ]
    assert marks[5].detail == "bl832/raw/p1/p1_2026-1.tar"  # the bundle is the archived stage, not a copy
    assert marks[6].detail == "job local-42, exit 0"
    assert marks[8].detail == "PruneRefused: copy changed"


def test_the_detail_links_each_dataset_and_names_the_bundle() -> None:
    detail = scan_detail(record_of_every_stage(), "https://user:pw@scicat.example.org/api/v3/?x=1")
    assert [(c.kind, c.url) for c in detail.catalog] == [
        ("derived", "https://scicat.example.org/api/v3/Datasets/pid%2Fderived"),
        ("raw", "https://scicat.example.org/api/v3/Datasets/pid%2Fraw"),
    ]
    [bundle] = detail.bundles
    assert (bundle.endpoint, bundle.bundle, bundle.archive_id, bundle.members) == (
        "tape",
        "bl832/raw/p1/p1_2026-1.tar",
        "job-7",
        1,
    )
    assert scan_detail(record_of_every_stage(), None).catalog[0].url is None


def test_public_base_keeps_only_an_http_address() -> None:
    assert public_base("http://[::1]:8080/api/v3/") == "http://[::1]:8080/api/v3"
    assert public_base("javascript:alert(1)") is None
    assert public_base("file:///etc/passwd") is None
    assert public_base("") is None


def test_embedded_json_cannot_end_its_script_block() -> None:
    text = "</script><!-- & \u2028"
    escaped = script_json(json.dumps({"t": text}))
    assert "<" not in escaped and ">" not in escaped and "&" not in escaped and "\u2028" not in escaped
    assert json.loads(escaped) == {"t": text}
    page = render("missing", "<b>title</b>", Problem(error=text)).decode()
    assert "<title>&lt;b&gt;title&lt;/b&gt;</title>" in page and page.count("</script>") == 2
