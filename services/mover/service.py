"""Declares the mover service for the runtime (entry point ``beamflow.services: mover``)."""

from __future__ import annotations

from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import RetentionHold, ScanMoved, ScanNew
from beamflow.common.service import Handler, Service
from beamflow.mover.handler import Mover


def build(config: BeamflowConfig) -> Service:
    mover = Mover(config)
    return Service(
        name="mover",
        accounts=_accounts,
        handlers=[
            Handler(
                name="scan-new",
                subject=subjects.stage_filter(subjects.NEW),
                event=ScanNew,
                handle=mover.on_scan_new,
                publishes=(ScanMoved, RetentionHold),
            ),
        ],
    )


def _accounts(config: BeamflowConfig) -> set[str]:
    """Every endpoint a copy goes to or from (the Globus ones have accounts)."""
    return {
        name
        for bl in config.beamlines.values()
        for d in bl.destinations
        for name in (d.endpoint, d.source or bl.watch.endpoint)
    }
