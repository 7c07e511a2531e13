"""The JSON the status page serves, one pydantic model per shape, and how each is made from what beamflow stores.

The browser renders only these shapes (the page embeds the first one it needs, later ones come from the API and
the live feed), so what an operator can see is decided here. Nothing here carries a secret: no NATS URL or
credential, and the catalog link is built from the catalog's address without any user or password in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from beamflow.common.deadletters import DeadLetter
from beamflow.common.events import ScanFile
from beamflow.common.ledger import (
    CopyRecord,
    FailureRecord,
    HistoryEntry,
    HoldRecord,
    PruneRecord,
    ScanRecord,
    ScanState,
)
from beamflow.statuspage.timeline import BUNDLE_KEY, CATALOG_KEY, StageMark, timeline
from pydantic import BaseModel, ConfigDict


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScanRow(_View):
    """One row of the scans table: the scan and its timeline."""

    scan_id: str
    beamline: str
    scan_path: str | None
    state: ScanState
    detected_at: datetime | None
    updated_at: datetime
    stages: list[StageMark]


class ScanList(_View):
    scans: list[ScanRow]
    limit: int
    beamline: str | None = None
    state: ScanState | None = None
    note: str = ""


class CatalogLink(_View):
    """A dataset the scan became; ``url`` is None when the catalog's address is not known here."""

    kind: str
    pid: str
    url: str | None = None


class Bundle(_View):
    """The archive bundle holding the scan on one archive endpoint."""

    endpoint: str
    bundle: str
    archive_id: str | None = None
    verified_at: datetime | None = None
    members: int = 0


class ScanDetail(_View):
    """Everything the ledger knows about one scan."""

    summary: ScanRow
    endpoint: str | None
    export_controlled: bool
    files: list[ScanFile]
    copies: list[CopyRecord]
    bundles: list[Bundle]
    catalog: list[CatalogLink]
    holds: list[HoldRecord]
    prunes: list[PruneRecord]
    failures: list[FailureRecord]
    external_ids: dict[str, str]
    warnings: list[str]
    history: list[HistoryEntry]


class DeadLetterView(_View):
    """One dead letter as the list shows it; ``seq`` is what the replay button sends."""

    seq: int
    stored_at: datetime
    beamline: str
    stage: str
    service: str
    error_type: str
    scan_id: str | None
    reason: str
    permanent: bool
    deliveries: int
    subject: str


class DeadLetterList(_View):
    dead_letters: list[DeadLetterView]


class ReplayView(_View):
    """What a replay did: the original went to ``subject`` again, stored as ``stream`` message ``stream_seq``."""

    seq: int
    scan_id: str | None
    subject: str
    stream: str
    stream_seq: int
    duplicate: bool


class Activity(_View):
    """One message seen on the bus, for the page's live activity list."""

    at: datetime
    subject: str
    stage: str
    beamline: str | None = None
    scan_id: str | None = None
    summary: str = ""


class Health(_View):
    status: Literal["alive"] = "alive"
    nats_connected: bool
    live: bool


class Problem(_View):
    error: str


def scan_row(record: ScanRecord) -> ScanRow:
    return ScanRow(
        scan_id=record.scan_id,
        beamline=record.beamline,
        scan_path=record.scan_path,
        state=record.state,
        detected_at=record.detected_at,
        updated_at=record.updated_at,
        stages=timeline(record),
    )


def public_base(url: str | None) -> str | None:
    """``url`` fit to show in a page: http(s) only, without user, password, query or fragment."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def catalog_links(record: ScanRecord, catalog_base: str | None) -> list[CatalogLink]:
    """The scan's datasets, each linked to its record in the SciCat API at ``catalog_base`` when known."""
    base = public_base(catalog_base)
    links: list[CatalogLink] = []
    for key, pid in sorted(record.external_ids.items()):
        if key.startswith(CATALOG_KEY):
            url = f"{base}/Datasets/{quote(pid, safe='')}" if base else None
            links.append(CatalogLink(kind=key[len(CATALOG_KEY) :], pid=pid, url=url))
    return links


def bundles(record: ScanRecord) -> list[Bundle]:
    found: list[Bundle] = []
    for key, name in sorted(record.external_ids.items()):
        if key.startswith(BUNDLE_KEY):
            endpoint = key[len(BUNDLE_KEY) :]
            copy = record.copies.get(endpoint)
            found.append(
                Bundle(
                    endpoint=endpoint,
                    bundle=name,
                    archive_id=record.external_ids.get(f"archive:{endpoint}"),
                    verified_at=copy.verified_at if copy else None,
                    members=len(copy.files) if copy else 0,
                )
            )
    return found


def scan_detail(record: ScanRecord, catalog_base: str | None) -> ScanDetail:
    return ScanDetail(
        summary=scan_row(record),
        endpoint=record.endpoint,
        export_controlled=record.export_controlled,
        files=list(record.files),
        copies=sorted(record.copies.values(), key=lambda c: (c.step, c.verified_at)),
        bundles=bundles(record),
        catalog=catalog_links(record, catalog_base),
        holds=sorted(record.holds.values(), key=lambda h: h.expires_at),
        prunes=sorted(record.prunes.values(), key=lambda p: p.pruned_at),
        failures=list(record.failures),
        external_ids=dict(sorted(record.external_ids.items())),
        warnings=list(record.warnings),
        history=list(record.history),
    )


def dead_letter_view(letter: DeadLetter) -> DeadLetterView:
    event = letter.event
    return DeadLetterView(
        seq=letter.seq,
        stored_at=letter.stored_at,
        beamline=event.beamline,
        stage=letter.stage,
        service=event.service,
        error_type=event.error_type,
        scan_id=event.scan_id,
        reason=event.reason,
        permanent=event.permanent,
        deliveries=event.deliveries,
        subject=letter.original.subject,
    )
