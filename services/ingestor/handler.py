"""The ingestor's handlers: a verified copy becomes a raw dataset, an archive is noted on it, an analysis
becomes a derived dataset linked to it. Each is idempotent: SciCat is asked first, and a dataset found by
its keyword is updated rather than made again (docs/decisions/0019).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from beamflow.common.catalog_config import BeamlineCatalog
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import EndpointConfig, resolve_inside
from beamflow.common.errors import PermanentError, SourceMissing
from beamflow.common.events import ScanAnalyzed, ScanArchived, ScanIngested, ScanMoved
from beamflow.common.ledger import Ledger
from beamflow.common.local_catalog import catalog_password, catalog_url
from beamflow.common.service import Context
from beamflow.ingestor import datasets
from beamflow.ingestor.catalog import (
    THUMBNAIL_CAPTION,
    Catalog,
    CatalogUnavailable,
    DatasetPatch,
    OrigDatablockPayload,
    RawDatasetMissing,
    derived_keyword,
    scan_keyword,
)
from beamflow.ingestor.extractors import (
    EXTRACTORS,
    Extracted,
    ProposalEntry,
    ProposalMapping,
    UnreadableScan,
    data_uri,
    extract,
)
from beamflow.ingestor.extractors.base import UnknownTechnique
from pyscicat.model import RawDataset

Action = Literal["created", "updated"]
T = TypeVar("T")
#: The most SciCat calls one step makes (find, create or patch, list and add a datablock, list and add an
#: attachment), each bounded by ``catalog.timeout``: the step's deadline.
CALLS_PER_STEP = 6


class ScanUnreadable(PermanentError):
    """The scan's files cannot be read as the beamline's technique says; dead-lettered with the reason."""


def proposal_mapping(catalog: BeamlineCatalog) -> ProposalMapping:
    """The beamline's catalog config in the extractors' terms."""
    return ProposalMapping(
        proposals={
            proposal: ProposalEntry(
                pi=entry.principal_investigator,
                owner=entry.owner,
                owner_email=entry.owner_email,
                owner_group=entry.owner_group,
                access_groups=list(entry.access_groups),
            )
            for proposal, entry in catalog.proposals.items()
        },
        access_groups=list(catalog.defaults.access_groups),
        instrument=catalog.instrument,
    )


def check_techniques(config: BeamflowConfig) -> None:
    """Refuse to start with a beamline whose technique no extractor reads (a config error, not a dead letter)."""
    for bl in config.beamlines.values():
        if bl.catalog is not None and bl.catalog.technique not in EXTRACTORS:
            raise UnknownTechnique(bl.catalog.technique, EXTRACTORS)


class Ingestor:
    def __init__(self, config: BeamflowConfig) -> None:
        check_techniques(config)
        self.config = config
        self._catalog: Catalog | None = None
        self._ledger: Ledger | None = None

    def catalog(self) -> Catalog:
        if self._catalog is None:
            connection = self.config.catalog
            self._catalog = Catalog(
                catalog_url(self.config),
                connection.username,
                catalog_password(self.config),
                connection.timeout.total_seconds(),
            )
        return self._catalog

    async def _in_catalog(self, work: Callable[[Catalog], T]) -> T:
        """One catalog session in a worker thread, given up after a deadline (retried later) so a SciCat that
        accepts connections but never answers cannot hold a message forever: pyscicat's login has no timeout.
        """
        deadline = self.config.catalog.timeout.total_seconds() * CALLS_PER_STEP
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.catalog().session, work), deadline)
        except TimeoutError:
            raise CatalogUnavailable(
                f"SciCat at {self.catalog().base_url} did not finish a step within {deadline:.0f} s; retrying"
            ) from None

    def _catalogued(self, beamline: str) -> BeamlineCatalog | None:
        bl = self.config.beamlines.get(beamline)
        return bl.catalog if bl is not None else None

    async def _export_controlled(self, ctx: Context, scan_id: str) -> bool:
        if self._ledger is None:
            self._ledger = await Ledger.open(ctx.js)
        record = await self._ledger.get(scan_id)
        return record is not None and record.export_controlled

    async def _published(
        self,
        ctx: Context,
        event: ScanMoved | ScanAnalyzed,
        pid: str,
        kind: Literal["raw", "derived"],
        action: Action,
        warnings: list[str],
    ) -> None:
        await ctx.publish(
            ScanIngested(
                scan_id=event.scan_id,
                beamline=event.beamline,
                catalog=self.catalog().base_url,
                pid=pid,
                dataset_kind=kind,
                action=action,
                warnings=warnings,
            )
        )
        ctx.log.info("catalogued", extra={"pid": pid, "kind": kind, "action": action, "warnings": len(warnings)})

    # -- scan.moved -> raw dataset ----------------------------------------------------------------------

    async def on_moved(self, ctx: Context, event: ScanMoved) -> None:
        catalog = self._catalogued(event.beamline)
        if catalog is None or event.destination_endpoint != catalog.destination:
            return
        if self.config.beamlines[event.beamline].is_flight_check(event.scan_path):
            return  # a flight check's test scan is not a dataset
        if event.export_controlled or await self._export_controlled(ctx, event.scan_id):
            ctx.log.info("export-controlled: not catalogued")
            return
        extracted, mtimes = await asyncio.to_thread(self._read, event, catalog)
        if extracted.skip_reason:
            ctx.log.info("not catalogued", extra={"reason": extracted.skip_reason})
            return
        who = datasets.owners(extracted, catalog)
        endpoint = self.config.endpoints[catalog.destination]
        raw = datasets.raw_dataset(event, extracted, who, catalog, endpoint)
        block = datasets.origdatablock(event.files, mtimes, endpoint, event.occurred_at)
        thumbnail = data_uri(extracted.thumbnail_png) if extracted.thumbnail_png else None
        pid, action = await self._in_catalog(lambda c: upsert_raw(c, event.scan_id, raw, block, thumbnail, who))
        warnings = [*extracted.warnings, *who.warnings]
        if thumbnail is None:
            warnings.append("no thumbnail could be made from the scan's image")
        await self._published(ctx, event, pid, "raw", action, warnings)

    def _read(self, event: ScanMoved, catalog: BeamlineCatalog) -> tuple[Extracted, dict[str, datetime]]:
        """Extract the metadata from the copy the config names, and each file's modification time."""
        name = catalog.read_from or catalog.destination
        root = self.config.filesystem_root(name)
        paths: list[Path] = []
        mtimes: dict[str, datetime] = {}
        for copy in event.files:
            path = resolve_inside(root, copy.path, name)
            try:
                mtimes[copy.path] = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
            except FileNotFoundError:
                raise SourceMissing(
                    f"{copy.path} is not on {name} any more, so scan {event.scan_id} cannot be catalogued from it; "
                    "restore the file (or point the beamline's catalog.read_from at a copy) and replay"
                ) from None
            paths.append(path)
        try:
            extracted = extract(catalog.technique, paths, proposal_mapping(catalog))
        except UnreadableScan as exc:
            raise ScanUnreadable(f"scan {event.scan_id} cannot be catalogued: {exc}") from None
        return extracted, mtimes

    # -- scan.archived -> the bundle on the raw dataset ---------------------------------------------------

    async def on_archived(self, ctx: Context, event: ScanArchived) -> None:
        if self._catalogued(event.beamline) is None or await self._export_controlled(ctx, event.scan_id):
            return
        pid = await self._in_catalog(lambda c: note_archive(c, event))
        ctx.log.info("archive noted in the catalog", extra={"pid": pid, "bundle": event.bundle})

    # -- scan.analyzed -> derived dataset ---------------------------------------------------------------

    async def on_analyzed(self, ctx: Context, event: ScanAnalyzed) -> None:
        catalog = self._catalogued(event.beamline)
        if catalog is None or await self._export_controlled(ctx, event.scan_id):
            return
        endpoint = self.config.endpoints[event.output_endpoint]
        pid, action = await self._in_catalog(lambda c: upsert_derived(c, event, catalog, endpoint))
        await self._published(ctx, event, pid, "derived", action, [])


# -- the SciCat side of each handler: blocking, run in a worker thread inside one catalog session ----------


def upsert_raw(
    catalog: Catalog,
    scan_id: str,
    raw: RawDataset,
    block: OrigDatablockPayload,
    thumbnail: str | None,
    who: datasets.Owners,
) -> tuple[str, Action]:
    """Create the dataset, or update the one made before; then add what it still lacks."""
    existing = catalog.find_by_keyword(scan_keyword(scan_id))
    action: Action
    if existing is None:
        pid, action = catalog.create(raw), "created"
    else:
        pid, action = str(existing["pid"]), "updated"
        catalog.patch(pid, datasets.raw_patch(raw))
    if not datasets.same_files(catalog.origdatablocks(pid), block):
        catalog.add_origdatablock(pid, block)
    if thumbnail is not None and not any(a.get("caption") == THUMBNAIL_CAPTION for a in catalog.attachments(pid)):
        catalog.add_attachment(datasets.thumbnail(pid, thumbnail, who))
    return pid, action


def raw_of(catalog: Catalog, scan_id: str, what: str) -> dict[str, Any]:
    existing = catalog.find_by_keyword(scan_keyword(scan_id))
    if existing is None:
        raise RawDatasetMissing(
            f"the {what} of scan {scan_id} arrived before its raw dataset is in SciCat; retrying until the "
            "ingestor has catalogued the scan"
        )
    return existing


def note_archive(catalog: Catalog, event: ScanArchived) -> str:
    existing = raw_of(catalog, event.scan_id, "archive")
    pid = str(existing["pid"])
    catalog.patch(pid, datasets.archive_patch(existing, event))
    return pid


def upsert_derived(
    catalog: Catalog, event: ScanAnalyzed, settings: BeamlineCatalog, endpoint: EndpointConfig
) -> tuple[str, Action]:
    raw = raw_of(catalog, event.scan_id, "analysis")
    derived = datasets.derived_dataset(event, raw, settings, endpoint)
    existing = catalog.find_by_keyword(derived_keyword(event.scan_id, event.compute_site))
    action: Action
    if existing is None:
        pid, action = catalog.create(derived), "created"
    else:
        pid, action = str(existing["pid"]), "updated"
        catalog.patch(
            pid,
            DatasetPatch(
                jobParameters=derived.jobParameters,
                usedSoftware=derived.usedSoftware,
                inputDatasets=derived.inputDatasets,
            ),
        )
    if event.outputs:
        block = datasets.origdatablock(event.outputs, {}, endpoint, event.occurred_at)
        if not datasets.same_files(catalog.origdatablocks(pid), block):
            catalog.add_origdatablock(pid, block)
    return pid, action
