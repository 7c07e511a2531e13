"""Tracing: one trace per scan across every service, carried in NATS message headers.

There is no NATS instrumentation for OpenTelemetry, so the runtime injects the W3C ``traceparent`` into the
headers of every message it publishes and extracts it from every message it receives (REFERENCE.md). An SDK
tracer provider is always installed so trace ids exist and appear in logs; spans leave the process only when
the standard ``OTEL_TRACES_EXPORTER`` asks for it (``otlp`` or ``console``): export is off by default.

When spans are exported, the HTTP clients the remote services are reached with are instrumented too
(``requests`` under globus-sdk and pyscicat, ``httpx`` under sfapi-client), so each external call is a
span of the scan's trace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)

TRACER_NAME = "beamflow"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current trace context to ``headers`` (in place) and return them."""
    propagate.inject(headers)
    return headers


def extract(headers: Mapping[str, str] | None) -> Context:
    return propagate.extract(dict(headers or {}))


def configure_tracing(service: str, namespace: str = "beamflow", exporter: SpanExporter | None = None) -> None:
    """Install a tracer provider for this process. ``exporter`` overrides ``OTEL_TRACES_EXPORTER`` (tests)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider) and exporter is None:
        return  # already configured in this process (several services in one test process)
    resource = Resource.create({"service.name": service, "service.namespace": namespace})
    provider = TracerProvider(resource=resource)
    chosen = exporter or _exporter_from_environment()
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    trace.set_tracer_provider(provider)
    if chosen is not None:
        _instrument_http_clients()


def _instrument_http_clients() -> None:
    """A span per request of the libraries' HTTP clients (installed with ``beamflow[otlp]``)."""
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:
        log.warning("HTTP client instrumentation is not installed: pip install 'beamflow[otlp]'")
        return
    RequestsInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()


def _exporter_from_environment() -> SpanExporter | None:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if name in ("", "none"):
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            log.warning(
                "OTEL_TRACES_EXPORTER=otlp but the OTLP exporter is not installed: pip install 'beamflow[otlp]'"
            )
            return None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    log.warning("unknown OTEL_TRACES_EXPORTER; tracing export stays off", extra={"exporter": name})
    return None
