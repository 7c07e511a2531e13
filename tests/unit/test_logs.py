"""Structured logs: a handler's own fields and its message context both reach the JSON line."""

from __future__ import annotations

import io
import json
import logging

from beamflow.common.logs import ContextLogger, JsonFormatter


def _logger(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger("beamflow.test-logs")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("pruner"))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_context_and_call_fields_are_merged_the_call_winning() -> None:
    stream = io.StringIO()
    log = ContextLogger(_logger(stream), {"scan_id": "bl832-1", "beamline": "bl832", "endpoint": "context"})
    log.info("pruned", extra={"freed_bytes": 1024, "endpoint": "spot832"})
    log.warning("no extra at all")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "pruned" and first["service"] == "pruner"
    assert (first["scan_id"], first["beamline"], first["freed_bytes"], first["endpoint"]) == (
        "bl832-1",
        "bl832",
        1024,
        "spot832",
    )
    assert second["scan_id"] == "bl832-1" and second["level"] == "warning" and "freed_bytes" not in second
