"""Declares the pruner service for the runtime (entry point ``beamflow.services: pruner``)."""

from __future__ import annotations

import asyncio
import contextlib

from beamflow.common import metrics, subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import RetentionHold, ScanPruned
from beamflow.common.runtime import Runtime
from beamflow.common.service import Handler, Service
from beamflow.pruner.handler import Pruner


def build(config: BeamflowConfig) -> Service:
    pruner = Pruner(config)
    return Service(
        name="pruner",
        accounts=_accounts,
        handlers=[
            Handler(
                name="hold-expired",
                subject=subjects.hold_filter(subjects.HOLD_EXPIRED),
                event=RetentionHold,
                handle=pruner.on_hold_expired,
                publishes=(ScanPruned,),
            ),
        ],
        background=[measure_pending_holds],
    )


#: How often the pending holds are counted for the ``beamflow.holds.pending`` gauge.
HOLDS_INTERVAL_SECONDS = 30.0


async def measure_pending_holds(runtime: Runtime) -> None:
    """Count the holds still scheduled (one subject each on ``hold.set.>``) for the metrics, until stopped."""
    while not runtime.stopping.is_set():
        with contextlib.suppress(Exception):  # a scrape shows the last count; NATS may be away
            info = await runtime.js.stream_info(
                subjects.HOLDS_STREAM, subjects_filter=f"{subjects.HOLD}.{subjects.HOLD_SET}.>"
            )
            metrics.holds_pending[subjects.HOLDS_STREAM] = len(info.state.subjects or {})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.stopping.wait(), HOLDS_INTERVAL_SECONDS)


def _accounts(config: BeamflowConfig) -> set[str]:
    """Every endpoint pruned, and every endpoint a prune checks."""
    return {n for name, e in config.endpoints.items() if e.retention for n in (name, e.retention.check_endpoint)}
