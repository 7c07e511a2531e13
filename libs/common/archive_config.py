"""Archive settings per beamline: which copy is archived, to which archive endpoint, and when.

The archive itself is an endpoint (``kind: tar`` locally; NERSC HPSS later), so retention rules can name it
as the check endpoint of the copies it protects: NERSC CFS is pruned only once a verified bundle holds it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from beamflow.common.durations import Duration
from pydantic import BaseModel, ConfigDict, Field, field_validator

TIB = 1024**4
GIB = 1024**3


class ArchivePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(description="The archive endpoint (kind: tar, or hpss).")
    source: str = Field(description="The filesystem endpoint whose verified copy is archived (a destination).")
    when: Literal["per_scan", "end_of_cycle", "on_demand"] = Field(
        default="on_demand",
        description="per_scan: each verified copy at once; end_of_cycle: a message schedule at the cycle's end; "
        "on_demand: `beamflow archive PROPOSAL`.",
    )
    proposal_pattern: str = Field(
        default=r"^(?P<proposal>[^/]+)/",
        description="Regex on the scan path with a 'proposal' group: which proposal a scan belongs to.",
    )
    default_proposal: str | None = Field(
        default=None, description="For scans whose path does not match; unset = such scans are dead-lettered."
    )
    after_cycle: Duration = Field(
        default=timedelta(days=1),
        description="end_of_cycle: how long after the cycle's last day the archive runs (late copies settle).",
    )
    part_size: int = Field(default=2 * TIB, gt=0, description="Bytes per bundle before the next _partN.")
    large_file: int = Field(default=65 * GIB, gt=0, description="Files above this go to the archive on their own.")

    @field_validator("proposal_pattern")
    @classmethod
    def _has_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        if "proposal" not in compiled.groupindex:
            raise ValueError("the pattern needs a named group 'proposal', e.g. ^(?P<proposal>[^/]+)/")
        return value

    def proposal_of(self, scan_path: str) -> str | None:
        match = re.search(self.proposal_pattern, scan_path)
        return match.group("proposal") if match else self.default_proposal
