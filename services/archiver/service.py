"""Declares the archiver service for the runtime (entry point ``beamflow.services: archiver``)."""

from __future__ import annotations

from beamflow.archiver.handler import Archiver
from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import ArchiveRequested, ArchiveScheduled, RetentionHold, ScanArchived, ScanMoved
from beamflow.common.service import Handler, Service


def build(config: BeamflowConfig) -> Service:
    archiver = Archiver(config)
    return Service(
        name="archiver",
        accounts=_accounts,
        handlers=[
            Handler(
                name="scan-moved",
                subject=subjects.stage_filter(subjects.MOVED),
                event=ScanMoved,
                handle=archiver.on_moved,
                publishes=(ScanArchived, RetentionHold, ArchiveScheduled),
            ),
            Handler(
                name="archive-request",
                subject=subjects.archive_request_subject("*"),
                event=ArchiveRequested,
                handle=archiver.on_request,
                publishes=(ScanArchived, RetentionHold),
            ),
        ],
    )


def _accounts(config: BeamflowConfig) -> set[str]:
    return {bl.archive.endpoint for bl in config.beamlines.values() if bl.archive is not None}
