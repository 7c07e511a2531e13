"""Declares the ledger service: one handler per event type it folds (entry point ``beamflow.services: ledger``)."""

from __future__ import annotations

from typing import Any

from beamflow.common import subjects
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import (
    Event,
    RetentionHold,
    ScanAnalyzed,
    ScanArchived,
    ScanFailed,
    ScanIngested,
    ScanMoved,
    ScanNew,
    ScanPruned,
)
from beamflow.common.ledger import Ledger
from beamflow.common.service import Context, Handler, Service


class LedgerWriter:
    def __init__(self) -> None:
        self._ledger: Ledger | None = None

    async def record(self, ctx: Context, event: Event) -> None:
        if self._ledger is None:
            self._ledger = await Ledger.open(ctx.js)
        await self._ledger.record(event, ctx.subject)


def build(config: BeamflowConfig) -> Service:
    writer = LedgerWriter()
    stages: list[tuple[str, type[Event], str]] = [
        (stage, model, subjects.stage_filter(stage))
        for stage, model in (
            (subjects.NEW, ScanNew),
            (subjects.MOVED, ScanMoved),
            (subjects.ARCHIVED, ScanArchived),
            (subjects.ANALYZED, ScanAnalyzed),
            (subjects.INGESTED, ScanIngested),
            (subjects.PRUNED, ScanPruned),
            (subjects.FAILED, ScanFailed),
        )
    ]
    stages += [
        ("hold-set", RetentionHold, subjects.hold_filter(subjects.HOLD_SET)),
        ("hold-expired", RetentionHold, subjects.hold_filter(subjects.HOLD_EXPIRED)),
    ]
    handlers: list[Handler[Any]] = [
        Handler(name=name, subject=subject, event=model, handle=writer.record) for name, model, subject in stages
    ]
    return Service(name="ledger", handlers=handlers, kv_writes=(subjects.LEDGER_BUCKET,))
