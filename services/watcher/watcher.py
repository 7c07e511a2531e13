"""The watcher of one beamline: finished files in, ``scan.new`` out, never lost on the way.

A file notice (inotify close/move or a stable poll) makes its scan a candidate; the scan is announced when
every file the rule asks for is present and finished. "Finished" means a close (or stability) notice was
seen for it, or its mtime is older than ``settle`` (it was there before we started watching). Every
announcement is spooled first and published by a small pool of senders; the reconcile pass walks the whole
folder at start and every ``reconcile_interval`` and announces what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from beamflow.common.config import BeamflowConfig, BeamlineConfig
from beamflow.common.errors import BeamflowError
from beamflow.common.events import ScanFile, ScanNew, scan_id_for
from beamflow.common.service import Publisher
from beamflow.common.telemetry import tracer
from beamflow.watcher.grouping import Grouping
from beamflow.watcher.sources import DIR, InotifySource, Notice, PollingSource, walk_files
from beamflow.watcher.spool import Spool

log = logging.getLogger(__name__)

SENDERS = 32
RETRY_MAX = 2.0


class BeamlineWatcher:
    def __init__(self, config: BeamflowConfig, beamline: str, publisher: Publisher, spool: Spool) -> None:
        self.config = config
        self.beamline = beamline
        self.settings: BeamlineConfig = config.beamlines[beamline]
        self.endpoint = self.settings.watch.endpoint
        self.root = config.filesystem_root(self.endpoint)
        self.grouping = Grouping(self.settings.scan, self.settings.watch.ignore)
        self.publisher = publisher
        self.spool = spool
        self.notices: asyncio.Queue[Notice] = asyncio.Queue()
        self.outbox: asyncio.Queue[ScanNew] = asyncio.Queue()
        self._closed: dict[str, float] = {}  # relative file path -> when a close notice arrived
        # Files found in a folder created after the watch began: no close notice can be trusted to come
        # for them, so they are finished once size and mtime hold still (path -> size, mtime_ns, polls).
        self._unsure: dict[str, tuple[int, int, int]] = {}
        self._queued: set[str] = set()  # scan ids waiting in the outbox
        self._wake_retry = asyncio.Event()
        self.announced = 0

    # -- deciding -------------------------------------------------------------------------------------------

    def _finished(self, rel: str, settle: float, now: float) -> os.stat_result | None:
        try:
            st = os.stat(self.root / rel, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if rel in self._closed or now - st.st_mtime >= settle:
            return st
        return None

    def candidate(self, scan_path: str, now: float) -> ScanNew | None:
        """The announcement for ``scan_path`` if every member is present and finished, else None."""
        settle = self.settings.watch.settle.total_seconds()
        files: list[ScanFile] = []
        for rel in self.grouping.files_of(scan_path):
            st = self._finished(rel, settle, now)
            if st is None:
                return None
            files.append(ScanFile(path=rel, size=st.st_size, mtime=st.st_mtime))
        closed_at = max((self._closed.get(f.path, f.mtime) for f in files), default=now)
        return ScanNew(
            scan_id=scan_id_for(self.beamline, self.endpoint, scan_path),
            beamline=self.beamline,
            endpoint=self.endpoint,
            scan_path=scan_path,
            files=files,
            detected_at=datetime.fromtimestamp(closed_at, UTC),
            export_controlled=self.settings.export_control.matches(scan_path),
        )

    def _enqueue(self, event: ScanNew) -> None:
        if event.scan_id in self._queued:
            return
        self.spool.put(event)
        self._queued.add(event.scan_id)
        self.outbox.put_nowait(event)
        for rel in self.grouping.files_of(event.scan_path):
            self._closed.pop(rel, None)

    def on_notice(self, rel: str, at: float) -> None:
        member = self.grouping.member(rel)
        if member is None:
            return
        self._unsure.pop(rel, None)
        self._closed[rel] = at
        event = self.candidate(member.scan_path, time.time())
        if event is not None:
            self._enqueue(event)

    def on_new_folder(self, rel_folder: str, listing: dict[str, os.stat_result]) -> None:
        for rel, st in listing.items():
            path = f"{rel_folder}/{rel}" if rel_folder not in ("", ".") else rel
            if path not in self._closed and self.grouping.member(path) is not None:
                self._unsure.setdefault(path, (st.st_size, st.st_mtime_ns, 0))

    def settle_unsure(self) -> None:
        """One stability poll of the files found in new folders; stable ones count as closed."""
        needed = self.settings.watch.stable_polls
        for rel, (size, mtime_ns, polls) in list(self._unsure.items()):
            try:
                st = os.stat(self.root / rel, follow_symlinks=False)
            except FileNotFoundError:
                del self._unsure[rel]
                continue
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                self._unsure[rel] = (st.st_size, st.st_mtime_ns, 0)
            elif polls + 1 >= needed:
                del self._unsure[rel]
                self.on_notice(rel, st.st_mtime)
            else:
                self._unsure[rel] = (size, mtime_ns, polls + 1)

    def reconcile(self, files: list[str] | None = None) -> int:
        """Announce every complete, settled scan under the root that was never announced."""
        now = time.time()
        listing = files if files is not None else list(walk_files(self.root))
        scans = {m.scan_path for rel in listing if (m := self.grouping.member(rel)) is not None}
        found = 0
        for scan_path in sorted(scans):
            scan_id = scan_id_for(self.beamline, self.endpoint, scan_path)
            if self.spool.was_announced(scan_id) or scan_id in self._queued:
                continue
            event = self.candidate(scan_path, now)
            if event is not None:
                self._enqueue(event)
                found += 1
        if found:
            log.info("reconcile found unannounced scans", extra={"beamline": self.beamline, "scans": found})
        return found

    # -- sending --------------------------------------------------------------------------------------------

    async def _send(self, event: ScanNew) -> bool:
        with tracer().start_as_current_span(
            "watcher announce",
            attributes={
                "beamflow.scan_id": event.scan_id,
                "beamflow.beamline": event.beamline,
            },
        ):
            try:
                await self.publisher.publish(event)
            except BeamflowError as exc:
                log.warning("publish failed; kept in the spool", extra={"scan_id": event.scan_id, "error": str(exc)})
                return False
            except Exception:  # a sender must never die: the event would sit in the outbox until a restart
                log.exception("unexpected publish error; kept in the spool", extra={"scan_id": event.scan_id})
                return False
        self.spool.done(event)
        self._queued.discard(event.scan_id)
        self.announced += 1
        return True

    async def _sender(self) -> None:
        delay = 0.05
        while True:
            event = await self.outbox.get()
            while not await self._send(event):
                # NATS is away: wait, then try the same event again (order within a sender is kept).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake_retry.wait(), delay)
                delay = min(delay * 2, RETRY_MAX)
            delay = 0.05

    # -- running --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        for event in self.spool.pending():  # left over from a previous run or an outage
            self._queued.add(event.scan_id)
            self.outbox.put_nowait(event)
        watch = self.settings.watch
        self.root.mkdir(parents=True, exist_ok=True)
        tasks = [asyncio.create_task(self._sender()) for _ in range(SENDERS)]
        inotify: InotifySource | None = None
        if watch.mode == "inotify":
            inotify = InotifySource(self.root, self.notices)
            inotify.start()
        else:
            poller = PollingSource(self.root, self.notices, watch.poll_interval.total_seconds(), watch.stable_polls)
            tasks.append(asyncio.create_task(poller.run()))
        tasks.append(asyncio.create_task(self._reconcile_loop()))
        tasks.append(asyncio.create_task(self._settle_loop()))
        log.info("watching", extra={"beamline": self.beamline, "root": str(self.root), "mode": watch.mode})
        try:
            while True:
                rel, at, kind = await self.notices.get()
                if kind == DIR:
                    listing = await asyncio.to_thread(walk_files, self.root / rel)
                    self.on_new_folder(rel, listing)
                else:
                    self.on_notice(rel, at)
        finally:
            if inotify is not None:
                inotify.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle_loop(self) -> None:
        interval = self.settings.watch.poll_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            if self._unsure:
                self.settle_unsure()

    async def _reconcile_loop(self) -> None:
        interval = self.settings.watch.reconcile_interval.total_seconds()
        while True:
            # At start: whatever arrived while we were not watching. Later: whatever inotify missed.
            listing = await asyncio.to_thread(walk_files, self.root)
            self.reconcile(list(listing))
            await asyncio.sleep(interval)


def spool_for(config: BeamflowConfig, beamline: str) -> Spool:
    return Spool(Path(config.state_dir) / "watcher" / beamline)
