"""The mover's handler for ``scan.new``: one transfer per destination, each published when verified."""

from __future__ import annotations

import time

from beamflow.common.config import BeamflowConfig, BeamlineConfig
from beamflow.common.errors import UnknownBeamline, UnknownEndpoint
from beamflow.common.events import ScanMoved, ScanNew
from beamflow.common.service import Context
from beamflow.common.transfer import controller_for


class Mover:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config

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
            result = await controller_for(source, target).transfer(
                source_name, source, destination.endpoint, target, paths
            )
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
                )
            )
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
