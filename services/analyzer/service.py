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
        kv_writes=(subjects.JOBS_BUCKET,),
        accounts=_accounts,
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


def _accounts(config: BeamflowConfig) -> set[str]:
    """The compute sites, and every endpoint a job's files are staged from, into or back to."""
    names: set[str] = set()
    for bl in config.beamlines.values():
        if bl.analysis is not None:
            site = config.compute.get(bl.analysis.site)
            names |= {bl.analysis.site, bl.analysis.source, bl.analysis.output_endpoint}
            names |= {site.scratch} if site is not None else set()
    return names
