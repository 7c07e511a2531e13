"""Who owns a dataset: the file, then the beamline's proposal mapping (config), then its defaults, warned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from beamflow.common.catalog_config import BeamlineCatalog, CatalogDefaults, ProposalEntry
from beamflow.common.simulate import write_scan_733
from beamflow.ingestor.datasets import owners
from beamflow.ingestor.extractors import extract
from beamflow.ingestor.handler import proposal_mapping

CATALOG = BeamlineCatalog(
    destination="data",
    technique="saxs-waxs-733",
    creation_location="/ALS/7.3.3",
    defaults=CatalogDefaults(
        owner_group="als-733-staff", contact_email="bl733@example.org", principal_investigator="Staff"
    ),
    proposals={
        "ALS-11123": ProposalEntry(
            principal_investigator="Grace Hopper", owner_email="grace@example.org", access_groups=["saxs-users"]
        )
    },
)


def test_the_configured_proposal_mapping_names_the_pi_when_the_header_does_not(tmp_path: Path) -> None:
    files = write_scan_733(tmp_path, "s/sample", np.random.default_rng(1), proposal="ALS-11123", pi=None, email=None)
    extracted = extract(CATALOG.technique, files, proposal_mapping(CATALOG))
    who = owners(extracted, CATALOG)
    assert (who.principal_investigator, who.owner_email, who.owner_group) == (
        "Grace Hopper",
        "grace@example.org",
        "ALS-11123",
    )
    assert "saxs-users" in who.access_groups and not who.warnings


def test_the_beamline_defaults_fill_what_nobody_names_and_say_so(tmp_path: Path) -> None:
    files = write_scan_733(tmp_path, "s/anon", np.random.default_rng(2), proposal=None, pi=None, email=None)
    extracted = extract(CATALOG.technique, files, proposal_mapping(CATALOG))
    who = owners(extracted, CATALOG)
    assert (who.principal_investigator, who.owner_group, who.contact_email) == (
        "Staff",
        "als-733-staff",
        "bl733@example.org",
    )
    assert len(who.warnings) == 3 and who.owner_email is None
