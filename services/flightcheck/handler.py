"""A flight check: write a test scan where the detector writes, wait for its verified copies, clean up, report.

The test scan's files (one per suffix of the beamline's scan rule, ``size`` random bytes each) are written
into the watched endpoint's flight-check folder, renamed into place so the watcher sees whole files. The
watcher, mover and ledger handle it as any scan; the catalog, the analyzer and the archiver skip it. The
check reads the ledger until every destination the scan should reach holds a verified copy, a failure is
recorded for it, or ``timeout`` passes.

Then every copy is removed through the endpoint's prune controller (checked unchanged first), so nothing of
the test scan stays behind, and ``flight.result.<beamline>`` says how it went. A failed check is also an
error in the logs (``alert``), a count in the ``beamflow.flight_checks`` metric, and a dead letter whose
reason names what did not arrive and why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Final

from beamflow.common.config import BeamflowConfig, BeamlineConfig, FlightCheck, expected_destinations
from beamflow.common.endpoints import FilesystemEndpoint, resolve_inside
from beamflow.common.errors import BeamflowError, PermanentError, UnknownBeamline
from beamflow.common.events import FlightChecked, FlightRequested, FlightScheduled, scan_id_for, utcnow
from beamflow.common.ledger import Ledger, ScanRecord
from beamflow.common.prune import prune_controller_for
from beamflow.common.runtime import Runtime
from beamflow.common.service import Context
from beamflow.common.simulate import write_scan_file
from opentelemetry import metrics

log = logging.getLogger(__name__)
LEDGER_POLL_SECONDS: Final = 0.5
_checks = metrics.get_meter("beamflow.flightcheck").create_counter(
    "beamflow.flight_checks", description="Flight checks run, by beamline and outcome (ok, failed)."
)


class FlightCheckFailed(PermanentError):
    """The test scan did not reach every destination in time (or a step failed on it)."""


def _write_files(root: Path, scan_path: str, suffixes: list[str], size: int) -> None:
    for suffix in suffixes:
        write_scan_file(root, scan_path, suffix, os.urandom(size))


class FlightChecker:
    def __init__(self, config: BeamflowConfig) -> None:
        self.config = config

    async def place_schedules(self, runtime: Runtime) -> None:
        """Background task at start: (re)place every beamline's repeating schedule; nothing runs in-process."""
        for name, beamline in self.config.beamlines.items():
            if beamline.flight_check is None:
                continue
            every = beamline.flight_check.every
            scheduled = FlightScheduled(beamline=name, every=every, request=FlightRequested(beamline=name))
            await runtime.publish(scheduled)
            log.info("flight check scheduled", extra={"beamline": name, "every": str(every)})

    async def on_request(self, ctx: Context, event: FlightRequested) -> None:
        beamline = self.config.beamlines.get(event.beamline)
        if beamline is None:
            raise UnknownBeamline(f"flight check asked for beamline {event.beamline!r}, which is not configured")
        settings = beamline.flight_check
        if settings is None:
            raise PermanentError(f"beamline {event.beamline} has no flight_check in this configuration")
        watch = self.config.endpoints[beamline.watch.endpoint]
        assert isinstance(watch, FilesystemEndpoint)  # the config check guarantees a watched folder
        scan_path = f"{settings.folder}/flight-{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}"
        scan_id = scan_id_for(event.beamline, beamline.watch.endpoint, scan_path)
        expected = expected_destinations(self.config, event.beamline, scan_path)
        ctx.log.info("flight check starts", extra={"scan_id": scan_id, "expected": sorted(expected)})
        started = time.monotonic()
        await asyncio.to_thread(_write_files, watch.root, scan_path, beamline.scan.suffixes, settings.size)
        record = await self._wait(ctx, scan_id, expected, settings)
        seconds = time.monotonic() - started
        verified = sorted(d for d in expected if record is not None and d in record.copies)
        problems = [f"no verified copy at {d} within {settings.timeout}" for d in sorted(expected - set(verified))]
        problems += [f"{f.service}: {f.reason}" for f in (record.failures if record is not None else [])]
        cleaned, left = await self._clean(beamline, scan_path, record)
        problems += left
        ok = not problems
        await ctx.publish(
            FlightChecked(
                scan_id=scan_id,
                beamline=event.beamline,
                ok=ok,
                seconds=seconds,
                verified=verified,
                problems=problems,
                cleaned=cleaned,
            )
        )
        _checks.add(1, {"beamline": event.beamline, "outcome": "ok" if ok else "failed"})
        if not ok:
            ctx.log.error("flight check FAILED", extra={"alert": True, "scan_id": scan_id, "problems": problems})
            raise FlightCheckFailed(f"flight check of {event.beamline} failed (scan {scan_id}): " + "; ".join(problems))
        ctx.log.info("flight check passed", extra={"scan_id": scan_id, "seconds": round(seconds, 2)})

    async def _wait(self, ctx: Context, scan_id: str, expected: set[str], settings: FlightCheck) -> ScanRecord | None:
        ledger = await Ledger.open(ctx.js)
        deadline = time.monotonic() + settings.timeout.total_seconds()
        record = None
        while time.monotonic() < deadline:
            record = await ledger.get(scan_id)
            if record is not None and (expected <= set(record.copies) or record.failures):
                return record
            await asyncio.sleep(LEDGER_POLL_SECONDS)  # the ledger is another service's: read it again
        return record

    async def _clean(
        self, beamline: BeamlineConfig, scan_path: str, record: ScanRecord | None
    ) -> tuple[list[str], list[str]]:
        """Remove the test files from every endpoint that holds them; (cleaned endpoints, problems).

        Copies go through their endpoint's prune controller, checked unchanged first; the files the check
        wrote into the watched folder are its own and are simply removed."""
        watch = self.config.endpoints[beamline.watch.endpoint]
        assert isinstance(watch, FilesystemEndpoint)
        cleaned, problems = [beamline.watch.endpoint], []
        await asyncio.to_thread(_remove_written, watch, [f"{scan_path}{s}" for s in beamline.scan.suffixes])
        for name, copy in sorted((record.copies if record is not None else {}).items()):
            endpoint = self.config.endpoints[name]
            controller = prune_controller_for(endpoint)
            try:
                found = await asyncio.to_thread(controller.check_source, name, endpoint, copy.files)
                if not found:
                    await asyncio.to_thread(controller.delete, name, endpoint, copy.files)
            except BeamflowError as exc:
                found = [str(exc)]
            if found:
                problems += [f"cleaning {name}: {p}" for p in found]
            else:
                cleaned.append(name)
        return cleaned, problems


def _remove_written(watch: FilesystemEndpoint, relpaths: list[str]) -> None:
    for relpath in relpaths:
        resolve_inside(watch.root, relpath, "watched folder").unlink(missing_ok=True)
