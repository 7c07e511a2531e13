"""The safety rule for deletion, written once for the pruner and for ``beamflow prune --dry-run``.

A scan's files are deleted from an endpoint only when all four parts hold:

1. its retention hold has expired (and was not extended or placed again since);
2. the ledger records a verified copy (size and checksum) of every file at the hold's check endpoint;
3. a fresh look at that endpoint confirms the copy is still there, with that size and checksum;
4. every path is inside the endpoint's root (and the file there is still the one that was copied).

``evaluate`` answers with every part that failed, in words an operator can act on. It reads storage, so
it blocks; callers on an event loop run it in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import BeamflowError
from beamflow.common.events import RetentionHold
from beamflow.common.ledger import ScanRecord
from beamflow.common.prune import prune_controller_for


@dataclass(frozen=True)
class Verdict:
    problems: list[str] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.problems

    def reason(self) -> str:
        return "; ".join(self.problems)


def evaluate(
    config: BeamflowConfig,
    hold: RetentionHold,
    record: ScanRecord | None,
    now: datetime,
    rescheduled: RetentionHold | None,
    check_expiry: bool = True,
) -> Verdict:
    """Every part of the safety rule that fails for deleting ``hold``'s files from ``hold.endpoint``.

    ``rescheduled`` is the hold now pending on the bus for the same scan and endpoint, if any: a hold that
    was extended or placed again after this one fired protects the files. ``check_expiry=False`` asks
    "would the other parts hold today?" (the dry run of a hold that is not due yet).
    """
    problems: list[str] = []
    if check_expiry:
        if hold.expires_at > now:
            problems.append(f"1: the hold on {hold.endpoint} expires only at {hold.expires_at.isoformat()}")
        elif rescheduled is not None and rescheduled.expires_at > now:
            problems.append(
                f"1: the hold on {hold.endpoint} was {rescheduled.action} until {rescheduled.expires_at.isoformat()}"
            )
    if hold.endpoint not in config.endpoints:
        return Verdict([*problems, f"4: endpoint {hold.endpoint!r} is not in this configuration"])
    if hold.check_endpoint not in config.endpoints:
        return Verdict([*problems, f"3: check endpoint {hold.check_endpoint!r} is not in this configuration"])

    copy = record.copies.get(hold.check_endpoint) if record is not None else None
    if record is None:
        problems.append(f"2: the ledger has no record of scan {hold.scan_id}")
    elif copy is None:
        problems.append(f"2: the ledger records no verified copy of {hold.scan_id} on {hold.check_endpoint}")
    else:
        known = {f.path: f for f in copy.files}
        for wanted in hold.files:
            found = known.get(wanted.path)
            if found is None:
                problems.append(f"2: the ledger's copy on {hold.check_endpoint} lacks {wanted.path}")
            elif (found.size, found.checksum) != (wanted.size, wanted.checksum):
                problems.append(f"2: the ledger's copy of {wanted.path} differs from the one the hold protects")

    try:
        checker = prune_controller_for(config.endpoints[hold.check_endpoint])
        problems += [
            f"3: {p}"
            for p in checker.check_copy(
                hold.check_endpoint,
                config.endpoints[hold.check_endpoint],
                hold.files,
                copy.external_id if copy is not None else None,
            )
        ]
        pruner = prune_controller_for(config.endpoints[hold.endpoint])
        problems += [f"4: {p}" for p in pruner.check_source(hold.endpoint, config.endpoints[hold.endpoint], hold.files)]
    except BeamflowError as exc:
        problems.append(str(exc))
    return Verdict(problems)
