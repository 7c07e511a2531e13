"""Testing tools shipped with beamflow, for our own tests and for sites that add services.

- ``EventCollector`` (from ``beamflow.common.observe``): every event from the start, so a test waits for an
  outcome instead of sleeping: ``await collector.wait_for(lambda c: len(c.moved) == 3)``.
- ``harness``: a publisher, the services under test and a collector, in one ``async with``.
- ``running``: an async context manager that runs a service's runtime in this process and shuts it down
  gracefully afterwards.
- ``wait_until``: wait for a condition off the bus (a file appearing), with a deadline.
- ``wait_for_record``: wait until a scan's ledger record satisfies a condition.
- ``test_config``: a config with filesystem endpoints under one folder and short, test-friendly timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from beamflow.common.catalog_config import BeamlineCatalog, CatalogConnection
from beamflow.common.config import (
    BeamflowConfig,
    BeamlineConfig,
    DeliveryConfig,
    Destination,
    NatsConfig,
    ScanRule,
    WatchConfig,
)
from beamflow.common.endpoints import FilesystemEndpoint, RetentionRule
from beamflow.common.ledger import Ledger, ScanRecord
from beamflow.common.observe import EventCollector, collecting
from beamflow.common.runtime import Runtime
from beamflow.common.service import Service
from nats.js import JetStreamContext

__all__ = [
    "EventCollector",
    "collecting",
    "config_to_yaml",
    "harness",
    "running",
    "test_config",
    "wait_for_record",
    "wait_until",
]


@contextlib.asynccontextmanager
async def running(
    service: Service, config: BeamflowConfig, url: str, health_port: int | None = None
) -> AsyncIterator[Runtime]:
    runtime = Runtime(service, config, url, health_port=health_port)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.shutdown()


@contextlib.asynccontextmanager
async def harness(
    config: BeamflowConfig, url: str, *services: Service
) -> AsyncIterator[tuple[Runtime, EventCollector]]:
    """A publisher runtime (to inject events), the services under test, and a collector of every event."""
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(running(Service("test-publisher"), config, url))
        for service in services:
            await stack.enter_async_context(running(service, config, url))
        events = await stack.enter_async_context(collecting(url))
        yield bus, events


def test_config(
    base: Path,
    beamline: str = "bl832",
    suffixes: tuple[str, ...] = (".h5",),
    destinations: tuple[str, ...] = ("data",),
    mode: str = "inotify",
    retention: dict[str, RetentionRule] | None = None,
    catalog: BeamlineCatalog | None = None,
    catalog_connection: CatalogConnection | None = None,
    **delivery: Any,
) -> BeamflowConfig:
    """One beamline watching ``base/source`` with filesystem destinations ``base/<name>`` in order.

    ``retention`` gives endpoints (by name) a retention rule, e.g. ``{"source": RetentionRule(keep_for=
    timedelta(seconds=1), check_endpoint="data")}`` for a source pruned a second after its copy is verified.
    ``catalog`` makes the beamline catalogued, in the SciCat ``catalog_connection`` names.
    """
    rules = retention or {}
    endpoints: dict[str, Any] = {"source": FilesystemEndpoint(root=base / "source", retention=rules.get("source"))}
    for name in destinations:
        endpoints[name] = FilesystemEndpoint(root=base / name, retention=rules.get(name))
    for endpoint in endpoints.values():
        endpoint.root.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "max_deliver": 4,
        "ack_wait": timedelta(seconds=5),
        "backoff": [timedelta(milliseconds=100)],
        "drain_timeout": timedelta(seconds=10),
    }
    settings.update(delivery)
    return BeamflowConfig(
        nats=NatsConfig(data_dir=base / "nats", reconnect_time_wait=timedelta(milliseconds=200)),
        delivery=DeliveryConfig(**settings),
        state_dir=base / "state",
        endpoints=endpoints,
        beamlines={
            beamline: BeamlineConfig(
                watch=WatchConfig(
                    endpoint="source",
                    mode=mode,
                    poll_interval=timedelta(milliseconds=100),
                    settle=timedelta(seconds=30),
                    reconcile_interval=timedelta(hours=1),
                ),
                scan=ScanRule(suffixes=list(suffixes)),
                destinations=[Destination(endpoint=name) for name in destinations],
                catalog=catalog,
            )
        },
        catalog=catalog_connection or CatalogConnection(),
    )


test_config.__test__ = False  # type: ignore[attr-defined]  # pytest must not collect it


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Wait for something outside the bus (a file on disk, another process's state), polling with a deadline.

    Outcomes on the bus are awaited with ``EventCollector.wait_for`` instead, which needs no polling.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.01)


async def wait_for_record(
    js: JetStreamContext, scan_id: str, condition: Callable[[ScanRecord], bool], timeout: float = 30.0
) -> ScanRecord:
    """The scan's ledger record once ``condition`` holds for it (the ledger service folds asynchronously)."""
    ledger = await Ledger.open(js)
    deadline = time.monotonic() + timeout
    while True:
        record = await ledger.get(scan_id)
        if record is not None and condition(record):
            return record
        if time.monotonic() > deadline:
            state = record.model_dump_json(include={"copies", "holds", "prunes", "failures"}) if record else "none"
            raise AssertionError(f"ledger record of {scan_id} did not reach the condition within {timeout}s: {state}")
        await asyncio.sleep(0.02)


def config_to_yaml(config: BeamflowConfig, path: Path) -> Path:
    """Write ``config`` as a YAML file a ``beamflow run`` subprocess can load."""
    import yaml

    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return path
