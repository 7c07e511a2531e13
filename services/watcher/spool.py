"""The watcher's outbox on local disk: an announcement is written here before it is published.

A spooled ``scan.new`` is removed only after JetStream acknowledged storing it, so a crash of the watcher,
or NATS being down for hours, loses nothing: on start and whenever publishing works again, everything
still in the spool is sent (the deterministic message id absorbs any duplicate). The spool also keeps a
journal of the scans it has announced, so the periodic reconcile does not announce them again after the
server's de-duplication window has passed.
"""

from __future__ import annotations

import os
from pathlib import Path

from beamflow.common.events import ScanNew


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pending_dir = folder / "pending"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.journal_path = folder / "announced.log"
        self._announced: set[str] = set()
        if self.journal_path.exists():
            self._announced = {line.strip() for line in self.journal_path.read_text().splitlines() if line.strip()}
        self._journal = self.journal_path.open("a", buffering=1)

    def close(self) -> None:
        self._journal.close()

    def was_announced(self, scan_id: str) -> bool:
        return scan_id in self._announced

    def put(self, event: ScanNew) -> None:
        final = self.pending_dir / f"{event.scan_id}.json"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(event.to_json())
        os.replace(tmp, final)

    def done(self, event: ScanNew) -> None:
        """JetStream stored it: drop it from the outbox and remember it was announced."""
        if event.scan_id not in self._announced:
            self._announced.add(event.scan_id)
            self._journal.write(event.scan_id + "\n")
        (self.pending_dir / f"{event.scan_id}.json").unlink(missing_ok=True)

    def pending(self) -> list[ScanNew]:
        events = []
        for path in sorted(self.pending_dir.glob("*.json"), key=lambda p: p.stat().st_mtime):
            try:
                events.append(ScanNew.model_validate_json(path.read_bytes()))
            except (OSError, ValueError):
                path.rename(path.with_suffix(".corrupt"))  # keep it for a human; never block the rest
        return events
