"""Durations in configuration: ``90``, ``"30s"``, ``"1500ms"``, ``"5m"``, ``"12h"``, ``"180d"``.

Retention periods are naturally days; NATS has no day unit (REFERENCE.md), so we parse days here and
render server-side TTLs in hours.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m', '12h', '180d'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. '1500ms', '30s', '5m', '12h' or '180d'")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"{value!r} is not a duration")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is too long for a duration (at most 999999999 days)") from None


def format_duration(value: timedelta) -> str:
    # Integer microseconds: float seconds would turn 1001 ms into "1000ms".
    micros = value // timedelta(microseconds=1)
    for unit in ("d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1_000_000)
        if micros >= size and micros % size == 0:
            return f"{micros // size}{unit}"
    if micros % 1000 == 0:
        return f"{micros // 1000}ms"
    return f"{micros / 1000}ms"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
