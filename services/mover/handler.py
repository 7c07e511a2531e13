"""The mover's handler for ``scan.new``: one transfer per destination, each published when verified.

After each verified copy it places the retention holds that copy makes possible: an endpoint holding the
scan whose retention rule names this destination as its check endpoint may now be pruned when its hold
expires (8.3.2: the data832 copy starts spot832's 1-day hold; the NERSC copy starts data832's 35 days).
"""

from __future__ import annotations

import time

from beamflow.common import holds, metrics
from beamflow.common.config import BeamflowConfig, BeamlineConfig
from beamflow.common.errors import SourceMissing, UnknownBeamline, UnknownEndpoint
from beamflow.common.events import FileCopy, ScanMoved, ScanNew
from beamflow.common.ledger import Ledger
from beamflow.common.service import Context
from beamflow.common.telemetry import tracer
from beamflow.common.transfer import TransferResult, controller_for
from opentelemetry import trace


class Mover:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config
        self._ledger: Ledger | None = None

    def _beamline(self, event: ScanNew) -> BeamlineConfig:
        try:
            return self.config.beamlines[event.beamline]
        except KeyError:
            raise UnknownBeamline(
                f"scan {event.scan_id} is for beamline {event.beamline!r}, which this mover's configuration "
                f"does not define (known: {sorted(self.config.beamlines)}); add it and replay the dead letter"
            ) from None

    async def on_scan_new(self, ctx: Context, event: ScanNew) -> None:
        beamline = self._beamline(event)
        if event.endpoint not in self.config.endpoints:
            raise UnknownEndpoint(f"scan {event.scan_id} names endpoint {event.endpoint!r}, which is not configured")
        export_controlled = event.export_controlled or beamline.export_control.matches(event.scan_path)
        paths = [f.path for f in event.files]
        holds_copy = {event.endpoint}
        for step, destination in enumerate(beamline.destinations, start=1):
            source_name = destination.source or event.endpoint
            target = self.config.endpoints[destination.endpoint]
            if export_controlled and target.leaves_facility:
                ctx.log.info(
                    "export-controlled: not sent outside the facility",
                    extra={"destination": destination.endpoint},
                )
                continue
            if source_name not in holds_copy:
                ctx.log.info("skipped: its source was skipped", extra={"destination": destination.endpoint})
                continue
            source = self.config.endpoints[source_name]
            started = time.perf_counter()
            span = tracer().start_span(
                f"copy {source_name} -> {destination.endpoint}",
                attributes={
                    "beamflow.scan_id": event.scan_id,
                    "beamflow.beamline": event.beamline,
                    "beamflow.endpoint": destination.endpoint,
                    "beamflow.source_endpoint": source_name,
                },
            )
            try:
                with trace.use_span(span, end_on_exit=True):
                    result = await controller_for(source, target).transfer(
                        source_name, source, destination.endpoint, target, paths
                    )
                    span.set_attribute("beamflow.bytes", result.copied_bytes)
                    if result.external_id:
                        span.set_attribute("beamflow.external_id", result.external_id)
            except SourceMissing:
                done = await self._copy_in_ledger(ctx, event, destination.endpoint)
                if done is None:
                    raise
                # The copy was verified on an earlier delivery and the source pruned since: nothing to redo.
                result = TransferResult(files=done, copied_files=0, copied_bytes=0)
            seconds = time.perf_counter() - started
            await ctx.publish(
                ScanMoved(
                    scan_id=event.scan_id,
                    beamline=event.beamline,
                    source_endpoint=source_name,
                    destination_endpoint=destination.endpoint,
                    step=step,
                    files=result.files,
                    bytes=sum(f.size for f in result.files),
                    seconds=seconds,
                    copied=result.copied,
                    detected_at=event.detected_at,
                    external_id=result.external_id,
                    rate_bytes_per_second=result.rate_bytes_per_second,
                    scan_path=event.scan_path,
                    export_controlled=export_controlled,
                )
            )
            if result.copied_bytes:
                where = {"beamline": event.beamline, "endpoint": destination.endpoint}
                metrics.BYTES_MOVED.add(result.copied_bytes, where)
                speed = result.rate_bytes_per_second or result.copied_bytes / max(seconds, 1e-6)
                metrics.TRANSFER_SPEED.record(speed, {"endpoint": destination.endpoint})
            ctx.log.info(
                "verified copy",
                extra={
                    "destination": destination.endpoint,
                    "copied": result.copied,
                    "bytes": result.copied_bytes,
                    "seconds": round(seconds, 4),
                },
            )
            holds_copy.add(destination.endpoint)
            await self._place_holds(ctx, event, holds_copy, destination.endpoint, result.files)

    async def _place_holds(
        self, ctx: Context, event: ScanNew, holds_copy: set[str], verified_at: str, files: list[FileCopy]
    ) -> None:
        placed = await holds.place_after_copy(
            ctx.js, ctx.publish, self.config, event.scan_id, event.beamline, holds_copy, verified_at, files
        )
        for name in placed:
            rule = self.config.endpoints[name].retention
            assert rule is not None
            ctx.log.info("retention hold placed", extra={"endpoint": name, "keep_for_s": rule.keep_for.total_seconds()})

    async def _copy_in_ledger(self, ctx: Context, event: ScanNew, destination: str) -> list[FileCopy] | None:
        """The verified copy the ledger already records at ``destination``, if any."""
        if self._ledger is None:
            self._ledger = await Ledger.open(ctx.js)
        record = await self._ledger.get(event.scan_id)
        copy = record.copies.get(destination) if record is not None else None
        return list(copy.files) if copy is not None else None
