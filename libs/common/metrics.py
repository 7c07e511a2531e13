"""A service's metrics: OpenTelemetry instruments, read by a Prometheus reader and served on ``/metrics``.

The instruments are created once here, so every service names the same thing the same way; their labels are
bounded (service, stage, beamline, endpoint, outcome; never a scan id or a path). Until
``configure_metrics`` installs the reader (``beamflow run`` does), recording is a no-op, as the OpenTelemetry
API promises, so libraries and tests can record freely.

Gauges that need the bus (a consumer's pending messages, pending retention holds) are kept as plain values
the runtime refreshes on its own loop; the observable gauges only read them, since OpenTelemetry calls
their callbacks synchronously at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

_meter = metrics.get_meter("beamflow")

#: Messages a handler finished with, by ``service``, ``stage``, ``beamline`` and ``outcome``: ok, retried
#: (nak with back-off), dead_lettered (permanent, or deliveries exhausted).
MESSAGES: Final = _meter.create_counter(
    "beamflow.messages", unit="1", description="Messages handled, by service, stage, beamline and outcome."
)
HANDLER_SECONDS: Final = _meter.create_histogram(
    "beamflow.handler.duration", unit="s", description="Time a handler took for one message, by service and stage."
)
BYTES_MOVED: Final = _meter.create_counter(
    "beamflow.moved", unit="By", description="Bytes written by verified copies, by beamline and endpoint."
)
TRANSFER_SPEED: Final = _meter.create_histogram(
    "beamflow.transfer.speed", unit="By/s", description="Speed of each copy that wrote bytes, by endpoint."
)
BYTES_PRUNED: Final = _meter.create_counter(
    "beamflow.pruned", unit="By", description="Disk freed by the pruner, by beamline and endpoint."
)

#: (service, consumer) -> messages not yet handled (pending + in flight), refreshed by each runtime.
consumer_pending: dict[tuple[str, str], int] = {}
#: Retention holds scheduled and not yet expired, refreshed by the pruner.
holds_pending: dict[str, int] = {}


def _observe_consumers(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"service": s, "consumer": c}) for (s, c), n in sorted(consumer_pending.items())]


def _observe_holds(options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(n, {"stream": stream}) for stream, n in sorted(holds_pending.items())]


_meter.create_observable_gauge(
    "beamflow.consumer.pending",
    callbacks=[_observe_consumers],
    unit="1",
    description="Messages a service's consumer has not finished (the lag KEDA scales on).",
)
_meter.create_observable_gauge(
    "beamflow.holds.pending", callbacks=[_observe_holds], unit="1", description="Retention holds not yet expired."
)

_configured = False


def configure_metrics(service: str) -> None:
    """Install the Prometheus reader for this process (once; later calls do nothing)."""
    global _configured
    if _configured:
        return
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource

    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader()],
        resource=Resource.create({"service.name": f"beamflow-{service}", "service.namespace": "beamflow"}),
    )
    metrics.set_meter_provider(provider)
    _configured = True


def render() -> tuple[bytes, str]:
    """The Prometheus text exposition of every metric of this process, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
