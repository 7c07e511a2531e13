"""Durations in configuration: parsing, refusal of nonsense, and formatting that round-trips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from beamflow.common.durations import Duration, format_duration, parse_duration
from pydantic import BaseModel, ValidationError


class _Holder(BaseModel):
    wait: Duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1500ms", timedelta(milliseconds=1500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("12h", timedelta(hours=12)),
        ("180d", timedelta(days=180)),
        ("0.5s", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        ("90", timedelta(seconds=90)),
        (" 5 m ", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        (90, timedelta(seconds=90)),
        (0, timedelta(0)),
        (1.25, timedelta(seconds=1.25)),
        (timedelta(hours=2), timedelta(hours=2)),
    ],
)
def test_parse(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected
    assert _Holder(wait=value).wait == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-1, -0.5, -100])
def test_negative_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_refused(value: bool) -> None:
    with pytest.raises(ValueError, match="number of seconds or a string like '30s'"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["-5s", "soon", "5w", "5 weeks", "", "1e3s", "s", "5ss", "1,5s", "h12"])
def test_garbage_strings_are_refused_with_examples(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    message = str(caught.value)
    assert repr(value) in message
    assert "'30s'" in message and "'180d'" in message


@pytest.mark.parametrize("value", [None, [], {}, object()])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(value)


@pytest.mark.parametrize("value", ["99999999999d", 10**20])
def test_too_long_is_refused_with_a_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, -3, "soon", float("inf"), "99999999999d"])
def test_refusals_surface_as_validation_errors_in_models(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        _Holder(wait=value)  # type: ignore[arg-type]
    assert caught.value.errors()[0]["loc"] == ("wait",)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=180), "180d"),
        (timedelta(hours=12), "12h"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=5), "5m"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=30), "30s"),
        (timedelta(seconds=61), "61s"),
        (timedelta(milliseconds=1500), "1500ms"),
        (timedelta(milliseconds=1001), "1001ms"),
        (timedelta(milliseconds=4003), "4003ms"),
        (timedelta(0), "0ms"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    "value",
    [
        timedelta(days=180),
        timedelta(days=1, seconds=1),
        timedelta(hours=720),
        timedelta(minutes=5),
        timedelta(seconds=30),
        timedelta(milliseconds=1500),
        timedelta(milliseconds=1001),
        timedelta(milliseconds=2999),
        timedelta(seconds=1, microseconds=1),
        timedelta(microseconds=500),
        timedelta(0),
    ],
)
def test_format_round_trips(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@pytest.mark.parametrize("text", ["1500ms", "30s", "5m", "12h", "180d"])
def test_text_round_trips_through_a_model(text: str) -> None:
    holder = _Holder(wait=text)  # type: ignore[arg-type]
    assert holder.model_dump(mode="json") == {"wait": text}
    assert _Holder.model_validate_json(holder.model_dump_json()) == holder
