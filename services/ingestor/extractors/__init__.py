"""Metadata extractors: one per technique, chosen by the beamline's configuration, each reading a scan's files
into the fields of a SciCat raw dataset (`Extracted`).

The ingestor calls ``extract(technique, files, mapping)``; the technique names are the keys of `EXTRACTORS`
(``saxs-waxs-733``, ``tomography-832``). Adding a technique is adding a function with the `Extractor`
signature to that dict. Realistic files in both formats are written by the detector simulator,
`beamflow.common.simulate`; the EDF codec the 7.3.3 extractor reads with is `beamflow.common.edf`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from .base import (
    Extracted,
    HeaderKeys,
    ProposalEntry,
    ProposalMapping,
    UnknownTechnique,
    UnreadableScan,
)
from .saxs733 import extract_733
from .thumbnails import data_uri, thumbnail_png
from .tomo832 import extract_832

#: An extractor: the scan's files (absolute paths) and the operator's mapping (may be None) -> the fields.
Extractor = Callable[[list[Path], ProposalMapping | None], Extracted]

EXTRACTORS: Final[dict[str, Extractor]] = {
    "saxs-waxs-733": extract_733,
    "tomography-832": extract_832,
}


def extract(technique: str, files: Sequence[Path | str], mapping: ProposalMapping | None = None) -> Extracted:
    """Run the extractor registered for ``technique`` on ``files``.

    Raises `UnknownTechnique` (with the known names) for an unregistered technique, and whatever the
    extractor raises, notably `UnreadableScan` for a file that cannot be read at all.
    """
    try:
        extractor = EXTRACTORS[technique]
    except KeyError:
        raise UnknownTechnique(technique, EXTRACTORS) from None
    return extractor([Path(f) for f in files], mapping)


__all__ = [
    "EXTRACTORS",
    "Extracted",
    "Extractor",
    "HeaderKeys",
    "ProposalEntry",
    "ProposalMapping",
    "UnknownTechnique",
    "UnreadableScan",
    "data_uri",
    "extract",
    "extract_733",
    "extract_832",
    "thumbnail_png",
]
