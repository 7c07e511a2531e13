"""The parts of dead-letter replay that need no server: which stage a subject is, which headers go back."""

from __future__ import annotations

import pytest
from beamflow.common.deadletters import DeadLetterFilter, replay_headers, stage_of


@pytest.mark.parametrize(
    ("subject", "stage"),
    [
        ("scan.new.bl832", "new"),
        ("scan.moved.bl733", "moved"),
        ("hold.expired.bl832.bl832-0011aa.source", "hold"),
        ("somewhere", "somewhere"),
        ("", ""),  # the original was never captured
    ],
)
def test_stage_of_any_subject(subject: str, stage: str) -> None:
    assert stage_of(subject) == stage


def test_replay_headers_keep_the_message_and_drop_what_would_make_the_server_act_again() -> None:
    original = {
        "Nats-Msg-Id": "bl832-1:new",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Beamflow-Event": "scan.new",
        "Nats-TTL": "720h",
        "Nats-Scheduler": "hold.set.bl832.s.source",
        "nats-schedule-next": "purge",
        "Nats-Rollup": "sub",
        "Nats-Expected-Last-Subject-Sequence": "4",
    }
    assert replay_headers(original, 17) == {
        "Nats-Msg-Id": "replay:17",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Beamflow-Event": "scan.new",
        "Nats-TTL": "720h",
    }


def test_a_beamline_filter_is_applied_by_the_server() -> None:
    assert DeadLetterFilter(beamline="bl832").subject() == "scan.failed.bl832"
    assert DeadLetterFilter(stage="new").subject() == "scan.failed.>"
    assert DeadLetterFilter(stage="new", service="mover").describe() == "stage=new service=mover"
