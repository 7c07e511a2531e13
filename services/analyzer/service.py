"""Declares the analyzer service for the runtime (entry point ``beamflow.services: analyzer``)."""

from __future__ import annotations

from beamflow.analyzer.handler import Analyzer
from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import RetentionHold, ScanAnalyzed, ScanMoved
from beamflow.common.service import Handler, Service


def build(config: BeamflowConfig) -> Service:
    analyzer = Analyzer(config)
    return Service(
        name="analyzer",
        handlers=[
            Handler(
                name="scan-moved",
                subject=subjects.stage_filter(subjects.MOVED),
                event=ScanMoved,
                handle=analyzer.on_moved,
                publishes=(ScanAnalyzed, RetentionHold),
            ),
        ],
    )
