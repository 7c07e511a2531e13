"""Fixtures shared by every test: a real nats-server per test, and a config rooted in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.telemetry import configure_tracing
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_SPANS = InMemorySpanExporter()


def pytest_configure(config: pytest.Config) -> None:
    configure_tracing("beamflow-tests")
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _SPANS.clear()
    return _SPANS


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        server.stop()
