"""Declares the pruner service for the runtime (entry point ``beamflow.services: pruner``)."""

from __future__ import annotations

from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import RetentionHold, ScanPruned
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
    )


def _accounts(config: BeamflowConfig) -> set[str]:
    """Every endpoint pruned, and every endpoint a prune checks."""
    return {n for name, e in config.endpoints.items() if e.retention for n in (name, e.retention.check_endpoint)}
