"""A local OTLP/HTTP trace receiver: what a collector (Jaeger, the OpenTelemetry Collector) would receive.

The tests point the standard exporter at it (``OTEL_EXPORTER_OTLP_ENDPOINT=<url>``) and read the spans back:
which services took part in a trace, and what each span says. It answers ``POST /v1/traces`` (protobuf, as
the ``opentelemetry-exporter-otlp-proto-http`` exporter sends; needs ``beamflow[otlp]``) and keeps the spans
in memory. Shipped with beamflow as a testing tool, like the other stand-ins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

from beamflow.common.standin_http import Request, Response, StandInHandler, StandInHTTPServer, StandInRunner


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class TraceStore:
    """The receiver's API: spans by trace, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []

    def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path.rstrip("/") != "/v1/traces":
            return Response(404)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        export = ExportTraceServiceRequest()
        try:
            export.ParseFromString(request.body)
        except Exception:
            return Response(400, {"message": "not an ExportTraceServiceRequest"})
        received = []
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            service=str(resource.get("service.name", "")),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self._lock:
            self.spans += received
        return Response(200)

    def traces(self) -> dict[str, list[ReceivedSpan]]:
        with self._lock:
            spans = list(self.spans)
        by_trace: dict[str, list[ReceivedSpan]] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, []).append(span)
        return by_trace


class _Handler(StandInHandler):
    content_type: ClassVar[str] = "application/x-protobuf"
    service_name: ClassVar[str] = "trace receiver"


class TraceReceiverServer(StandInHTTPServer[TraceStore]):
    handler_class = _Handler


class TraceReceiver(StandInRunner[TraceReceiverServer]):
    """``with TraceReceiver() as receiver:`` listens on loopback; ``receiver.url`` is the OTLP endpoint."""

    thread_name: ClassVar[str] = "trace-receiver"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.store = TraceStore()

    def _bind(self, port: int) -> TraceReceiverServer:
        return TraceReceiverServer((self.host, port), self.store)

    @property
    def url(self) -> str:
        """What ``OTEL_EXPORTER_OTLP_ENDPOINT`` must be (the exporter adds ``/v1/traces``)."""
        return self.root_url
