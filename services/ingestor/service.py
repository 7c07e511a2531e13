"""Declares the ingestor service for the runtime (entry point ``beamflow.services: ingestor``)."""

from __future__ import annotations

from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.credentials import CATALOG
from beamflow.common.events import ScanAnalyzed, ScanArchived, ScanIngested, ScanMoved
from beamflow.common.service import Handler, Service
from beamflow.ingestor.handler import Ingestor


def build(config: BeamflowConfig) -> Service:
    ingestor = Ingestor(config)
    return Service(
        name="ingestor",
        accounts=_accounts,
        handlers=[
            Handler(
                name="scan-moved",
                subject=subjects.stage_filter(subjects.MOVED),
                event=ScanMoved,
                handle=ingestor.on_moved,
                publishes=(ScanIngested,),
            ),
            Handler(
                name="scan-archived",
                subject=subjects.stage_filter(subjects.ARCHIVED),
                event=ScanArchived,
                handle=ingestor.on_archived,
            ),
            Handler(
                name="scan-analyzed",
                subject=subjects.stage_filter(subjects.ANALYZED),
                event=ScanAnalyzed,
                handle=ingestor.on_analyzed,
                publishes=(ScanIngested,),
            ),
        ],
    )


def _accounts(config: BeamflowConfig) -> set[str]:
    return {CATALOG}
