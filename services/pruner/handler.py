"""The pruner's handler for expired holds: check the safety rule, delete, publish ``scan.pruned``."""

from __future__ import annotations

import asyncio

from beamflow.common import holds, metrics
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import HpssEndpoint
from beamflow.common.errors import LedgerBehind, PruneRefused
from beamflow.common.events import RetentionHold, ScanPruned, utcnow
from beamflow.common.ledger import Ledger, ScanRecord
from beamflow.common.prune import Deleted, prune_controller_for
from beamflow.common.safety import Verdict, evaluate
from beamflow.common.service import Context

#: How early a hold may arrive (the scheduler's tick) and still be waited for rather than refused.
SCHEDULER_SLACK_S = 2.0
#: Holds on at most this many bytes are checked and deleted on the event loop: a trip to a worker thread
#: (and the GIL hand-over that comes with it) costs more than reading and hashing them. Larger ones go
#: to a thread so heartbeats and other holds keep moving, as do holds whose check is a job at NERSC (HPSS).
#: See docs/decisions/0017.
INLINE_BYTES = 1024 * 1024


class Pruner:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config
        self._ledger: Ledger | None = None

    async def on_hold_expired(self, ctx: Context, hold: RetentionHold) -> None:
        if self._ledger is None:
            self._ledger = await Ledger.open(ctx.js)
        rescheduled = await holds.pending(ctx.js, hold)
        if rescheduled is not None and rescheduled.expires_at > hold.expires_at:
            ctx.log.info(
                "hold was extended or placed again; not pruning",
                extra={"endpoint": hold.endpoint, "expires_at": rescheduled.expires_at.isoformat()},
            )
            return
        early = (hold.expires_at - utcnow()).total_seconds()
        if 0 < early <= SCHEDULER_SLACK_S:
            # The server's scheduler ticks on whole seconds and can fire a fraction early: wait until due.
            await asyncio.sleep(early)
        record = await self._ledger.get(hold.scan_id)
        if record is not None and hold.endpoint in record.prunes:
            ctx.log.info("already pruned", extra={"endpoint": hold.endpoint})
            return
        if record is None or hold.check_endpoint not in record.copies:
            # The mover publishes the copy before it places the hold, so the ledger service has simply not
            # folded it in yet: wait for it (with back-off) instead of refusing for good. Only when it never
            # arrives does the message run out of deliveries and become a dead letter.
            raise LedgerBehind(
                f"the ledger has no verified copy of scan {hold.scan_id} on {hold.check_endpoint} yet; "
                "nothing was deleted and the hold is retried. If this persists, check that the ledger service "
                "runs (`beamflow status` shows the scan once it does)"
            )
        remote_check = isinstance(self.config.endpoints.get(hold.check_endpoint), HpssEndpoint)
        if sum(f.size for f in hold.files) <= INLINE_BYTES and not remote_check:
            verdict, deleted = self._check_and_delete(hold, record, rescheduled)
        else:
            verdict, deleted = await asyncio.to_thread(self._check_and_delete, hold, record, rescheduled)
        if deleted is None:
            raise PruneRefused(
                f"not pruning scan {hold.scan_id} from {hold.endpoint}: {verdict.reason()}. Nothing was deleted; "
                f"fix the copy on {hold.check_endpoint} (or the cause named) and replay this dead letter"
            )
        # Counted when freed, not when announced: a retry after a failed publish finds the files gone and frees 0.
        metrics.BYTES_PRUNED.add(deleted.freed_bytes, {"beamline": hold.beamline, "endpoint": hold.endpoint})
        await ctx.publish(
            ScanPruned(
                scan_id=hold.scan_id,
                beamline=hold.beamline,
                endpoint=hold.endpoint,
                check_endpoint=hold.check_endpoint,
                files=deleted.files,
                freed_bytes=deleted.freed_bytes,
            )
        )
        ctx.log.info(
            "pruned",
            extra={
                "endpoint": hold.endpoint,
                "freed_bytes": deleted.freed_bytes,
                "already_gone": deleted.already_gone,
            },
        )

    def _check_and_delete(
        self, hold: RetentionHold, record: ScanRecord | None, rescheduled: RetentionHold | None
    ) -> tuple[Verdict, Deleted | None]:
        """The safety rule, then the deletion only if every part held, in one call.

        Storage is read (the fresh checksum of the copy, the source's checks) and written (the unlinks) in
        the same thread, right after each other, so the files deleted are the ones just checked.
        """
        verdict = evaluate(self.config, hold, record, utcnow(), rescheduled)
        if not verdict.safe:
            return verdict, None
        endpoint = self.config.endpoints[hold.endpoint]
        return verdict, prune_controller_for(endpoint).delete(hold.endpoint, endpoint, hold.files)
