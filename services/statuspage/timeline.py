"""A scan's timeline: which stages it went through and when, read from its ledger record.

The stages are the status page's columns: detected, copied (one mark per destination), catalogued, archived,
analysed, pruned, failed. Everything comes from the record the ledger service folded, so the page shows
exactly what ``beamflow status SCAN`` shows, and needs no event history of its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from beamflow.common.ledger import HistoryEntry, ScanRecord
from pydantic import BaseModel, ConfigDict

Stage = Literal["detected", "copied", "catalogued", "archived", "analysed", "pruned", "failed"]
STAGES: tuple[Stage, ...] = ("detected", "copied", "catalogued", "archived", "analysed", "pruned", "failed")

#: ``external_ids`` keys the ledger writes for the stages that have no section of their own in the record.
CATALOG_KEY = "catalog:"
BUNDLE_KEY = "bundle:"
JOB_KEY = "job:"


class StageMark(BaseModel):
    """One thing that happened to a scan: its stage, where (endpoint, service, catalog kind), when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Stage
    label: str
    at: datetime | None = None
    detail: str = ""


def _last(record: ScanRecord, prefix: str) -> HistoryEntry | None:
    """The latest history entry starting with ``prefix`` (the history is kept sorted by time)."""
    return next((h for h in reversed(record.history) if h.what.startswith(prefix)), None)


def _keyed(record: ScanRecord, prefix: str) -> list[tuple[str, str]]:
    return sorted((key[len(prefix) :], value) for key, value in record.external_ids.items() if key.startswith(prefix))


def timeline(record: ScanRecord) -> list[StageMark]:
    """Every stage mark of ``record``, stage by stage in pipeline order."""
    marks: list[StageMark] = []
    if record.detected_at is not None:
        where = f" on {record.endpoint}" if record.endpoint else ""
        marks.append(
            StageMark(
                stage="detected", label="detected", at=record.detected_at, detail=f"{len(record.files)} file(s){where}"
            )
        )
    archives = {endpoint for endpoint, _ in _keyed(record, BUNDLE_KEY)}
    # A verified bundle is folded in as a copy too (so retention can check it); here it is the archived stage.
    for copy in sorted(record.copies.values(), key=lambda c: (c.step, c.verified_at)):
        if copy.endpoint in archives:
            continue
        how = "copied and verified" if copy.copied else "already held a verified copy"
        marks.append(
            StageMark(stage="copied", label=copy.endpoint, at=copy.verified_at, detail=f"{how}, {copy.bytes} bytes")
        )
    # The raw dataset first: the derived ones are made from it.
    for kind, pid in sorted(_keyed(record, CATALOG_KEY), key=lambda item: (item[0] != "raw", item[0])):
        entry = _last(record, f"catalogued ({kind},")
        marks.append(StageMark(stage="catalogued", label=kind, at=entry.at if entry else None, detail=pid))
    for endpoint, bundle in _keyed(record, BUNDLE_KEY):
        entry = _last(record, f"archived {endpoint}")
        marks.append(StageMark(stage="archived", label=endpoint, at=entry.at if entry else None, detail=bundle))
    for site, job in _keyed(record, JOB_KEY):
        entry = _last(record, f"analyzed {site}")
        detail = f"job {job}" + (f", {entry.detail}" if entry and entry.detail else "")
        marks.append(StageMark(stage="analysed", label=site, at=entry.at if entry else None, detail=detail))
    for pruned in sorted(record.prunes.values(), key=lambda p: p.pruned_at):
        marks.append(
            StageMark(
                stage="pruned",
                label=pruned.endpoint,
                at=pruned.pruned_at,
                detail=f"{pruned.freed_bytes} bytes freed; {pruned.check_endpoint} verified",
            )
        )
    for failure in record.failures:
        marks.append(
            StageMark(
                stage="failed", label=failure.service, at=failure.at, detail=f"{failure.error_type}: {failure.reason}"
            )
        )
    return marks
