"""What the ingestor sends to SciCat, built from events, extracted metadata and config. Pure: no I/O.

Every value SciCat requires has a source in the file, the proposal mapping or the beamline's configured
defaults, in that order; each fallback is reported as a warning that ends up in the ledger.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from beamflow.common.catalog_config import BeamlineCatalog
from beamflow.common.checksums import ALGORITHM
from beamflow.common.endpoints import EndpointConfig
from beamflow.common.events import FileCopy, ScanAnalyzed, ScanArchived, ScanMoved
from beamflow.ingestor.catalog import (
    THUMBNAIL_CAPTION,
    DatasetPatch,
    OrigDatablockPayload,
    derived_keyword,
    scan_keyword,
)
from beamflow.ingestor.extractors.base import Extracted
from pyscicat.model import Attachment, DataFile, DerivedDataset, RawDataset


@dataclass
class Owners:
    """Who a dataset belongs to, with the warnings collected while deciding."""

    owner: str
    owner_group: str
    owner_email: str | None
    contact_email: str
    principal_investigator: str
    access_groups: list[str]
    proposal: str | None
    warnings: list[str] = field(default_factory=list)


def owners(extracted: Extracted, catalog: BeamlineCatalog) -> Owners:
    """The extractor has already applied the proposal mapping; what is still missing comes from the
    beamline's configured defaults, each with a warning saying which default was used."""
    warnings: list[str] = []
    defaults = catalog.defaults
    pi = extracted.principal_investigator
    if pi is None:
        pi = defaults.principal_investigator
        warnings.append(f"no principal investigator in the file or the proposal mapping; used {pi!r}")
    group = extracted.owner_group or extracted.proposal
    if group is None:
        group = defaults.owner_group
        warnings.append(f"no proposal or owner group in the file or the proposal mapping; used {group!r}")
    email = extracted.owner_email
    if email is None:
        warnings.append(f"no owner e-mail; contact is the beamline's {defaults.contact_email}")
    return Owners(
        owner=extracted.owner or pi,
        owner_group=group,
        owner_email=email,
        contact_email=email or defaults.contact_email,
        principal_investigator=pi,
        access_groups=sorted({*extracted.access_groups, *defaults.access_groups}),
        proposal=extracted.proposal,
        warnings=warnings,
    )


def location(endpoint: EndpointConfig, paths: list[str]) -> tuple[str, list[str]]:
    """SciCat's sourceFolder (the scan's folder on the endpoint) and each file's path relative to it."""
    folder = posixpath.commonpath([posixpath.dirname(p) for p in paths]) if paths else ""
    root = str(endpoint.root)
    source_folder = posixpath.join(root, folder) if folder else root
    return source_folder, [posixpath.relpath(p, folder or ".") for p in paths]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def raw_dataset(
    moved: ScanMoved,
    extracted: Extracted,
    who: Owners,
    catalog: BeamlineCatalog,
    endpoint: EndpointConfig,
) -> RawDataset:
    source_folder, _ = location(endpoint, [f.path for f in moved.files])
    created = extracted.creation_time or moved.detected_at or moved.occurred_at
    return RawDataset(
        datasetName=extracted.dataset_name,
        description=extracted.description,
        owner=who.owner,
        ownerGroup=who.owner_group,
        ownerEmail=who.owner_email,
        contactEmail=who.contact_email,
        accessGroups=who.access_groups,
        principalInvestigator=who.principal_investigator,
        creationLocation=catalog.creation_location,
        creationTime=iso(created),
        sourceFolder=source_folder,
        proposalId=who.proposal,
        sampleId=extracted.sample,
        keywords=[scan_keyword(moved.scan_id), moved.beamline, catalog.technique],
        techniques=[{"pid": catalog.technique, "name": catalog.technique}],
        scientificMetadata=scientific_metadata(moved, extracted),
        isPublished=False,
    )


def scientific_metadata(moved: ScanMoved, extracted: Extracted) -> dict[str, Any]:
    return {
        **extracted.scientific_metadata,
        "beamflow": {
            "scan_id": moved.scan_id,
            "beamline": moved.beamline,
            "endpoint": moved.destination_endpoint,
            "scan_path": moved.scan_path,
            "checksum_algorithm": ALGORITHM,
        },
    }


def raw_patch(dataset: RawDataset) -> DatasetPatch:
    """What a re-run refreshes on a dataset it made before: the metadata it may now read better."""
    return DatasetPatch(
        scientificMetadata=dataset.scientificMetadata,
        description=dataset.description,
        owner=dataset.owner,
        ownerGroup=dataset.ownerGroup,
        ownerEmail=dataset.ownerEmail,
        contactEmail=dataset.contactEmail,
        principalInvestigator=dataset.principalInvestigator,
        accessGroups=dataset.accessGroups,
        proposalId=dataset.proposalId,
    )


def origdatablock(
    files: list[FileCopy], mtimes: dict[str, datetime], endpoint: EndpointConfig, fallback: datetime
) -> OrigDatablockPayload:
    """Every file of the scan with size, time and checksum (SciCat requires a time for each). SciCat adds a
    datablock's size and file count to its dataset's, so the dataset itself is created without them."""
    _, relative = location(endpoint, [f.path for f in files])
    return OrigDatablockPayload(
        size=sum(f.size for f in files),
        chkAlg=ALGORITHM,
        dataFileList=[
            DataFile(path=rel, size=f.size, time=iso(mtimes.get(f.path, fallback)), chk=f.checksum)
            for f, rel in zip(files, relative, strict=True)
        ],
    )


def same_files(existing: list[dict[str, Any]], block: OrigDatablockPayload) -> bool:
    """Whether SciCat already lists exactly these files with these checksums (a re-run adds nothing)."""
    wanted = {(f.path, f.size, f.chk) for f in block.dataFileList}
    for known in existing:
        listed = {(f.get("path"), f.get("size"), f.get("chk")) for f in known.get("dataFileList") or []}
        if listed == wanted:
            return True
    return False


def thumbnail(pid: str, data_uri: str, who: Owners) -> Attachment:
    return Attachment(
        datasetId=pid,
        thumbnail=data_uri,
        caption=THUMBNAIL_CAPTION,
        ownerGroup=who.owner_group,
        accessGroups=who.access_groups,
    )


def archive_patch(existing: dict[str, Any], archived: ScanArchived) -> DatasetPatch:
    """The raw dataset's scientificMetadata with the archive bundle added (PATCH replaces the whole object)."""
    metadata = dict(existing.get("scientificMetadata") or {})
    archives = dict(metadata.get("archive") or {})
    archives[archived.archive_endpoint] = {
        "bundle": archived.bundle,
        "members": archived.members,
        "external_id": archived.external_id,
        "archived_at": iso(archived.occurred_at),
    }
    metadata["archive"] = archives
    return DatasetPatch(scientificMetadata=metadata)


def derived_dataset(
    analyzed: ScanAnalyzed, raw: dict[str, Any], catalog: BeamlineCatalog, endpoint: EndpointConfig
) -> DerivedDataset:
    source_folder, _ = location(endpoint, [f.path for f in analyzed.outputs])
    return DerivedDataset(
        datasetName=f"{raw.get('datasetName') or analyzed.scan_id} ({analyzed.compute_site} analysis)",
        description=f"Analysis of {raw.get('pid')} at {analyzed.compute_site}, job {analyzed.job_id}",
        owner=raw["owner"],
        ownerGroup=raw["ownerGroup"],
        ownerEmail=raw.get("ownerEmail"),
        contactEmail=raw["contactEmail"],
        accessGroups=raw.get("accessGroups") or [],
        investigator=raw.get("principalInvestigator") or raw["owner"],
        inputDatasets=[raw["pid"]],
        # What the job said it ran comes first: a site that swaps in its own reconstruction is named.
        usedSoftware=[" ".join(filter(None, (analyzed.software.get("name"), analyzed.software.get("version"))))]
        if analyzed.software.get("name")
        else catalog.derived_software,
        jobParameters={
            **analyzed.parameters,
            "analysis": analyzed.analysis,
            "compute_site": analyzed.compute_site,
            "job_id": analyzed.job_id,
            "exit_status": analyzed.exit_status,
            "runtime_seconds": analyzed.runtime_seconds,
        },
        creationTime=iso(analyzed.occurred_at),
        sourceFolder=source_folder,
        keywords=[derived_keyword(analyzed.scan_id, analyzed.compute_site), analyzed.beamline, "derived"],
        scientificMetadata={"beamflow": {"scan_id": analyzed.scan_id, "output_endpoint": analyzed.output_endpoint}},
        isPublished=False,
    )
