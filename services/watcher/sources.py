"""Where finished-file notices come from: inotify through watchdog, or polling with a stability rule.

Both push ``(relative path, time, kind)`` onto an asyncio queue; the watcher decides what forms a scan.
``kind`` is ``"file"`` for a finished file and ``"dir"`` for a new folder: inotify cannot report files that
were written into a folder before its watch existed, so the watcher must look into new folders itself.
"""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

# watchdog warns when a nested folder is created so fast that it registers the same watch twice; it then
# replaces the watch itself, so the warning carries nothing an operator can act on.
warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning, module="watchdog")

Notice = tuple[str, float, str]
FILE = "file"
DIR = "dir"


class _Forward(FileSystemEventHandler):
    """Runs in watchdog's thread; hands notices to the event loop."""

    def __init__(self, root: Path, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Notice]) -> None:
        self.root = root
        self.loop = loop
        self.queue = queue

    def _forward(self, path: str | bytes, kind: str) -> None:
        text = os.fsdecode(path)
        try:
            rel = Path(text).relative_to(self.root).as_posix()
        except ValueError:
            return
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (rel, time.time(), kind))

    def on_closed(self, event: FileSystemEvent) -> None:
        # Only IN_CLOSE_WRITE arrives here; IN_CLOSE_NOWRITE (a reader closing) is on_closed_no_write.
        if isinstance(event, FileClosedEvent) and not event.is_directory:
            self._forward(event.src_path, FILE)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent) and not event.is_directory:
            self._forward(event.dest_path, FILE)
        elif isinstance(event, DirMovedEvent):
            self._forward(event.dest_path, DIR)

    def on_created(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirCreatedEvent):
            self._forward(event.src_path, DIR)


class InotifySource:
    def __init__(self, root: Path, queue: asyncio.Queue[Notice]) -> None:
        self.root = root
        self.queue = queue
        self._observer: Observer | None = None  # type: ignore[valid-type]

    def start(self) -> None:
        observer = Observer()
        observer.schedule(_Forward(self.root, asyncio.get_running_loop(), self.queue), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)


def walk_files(root: Path) -> dict[str, os.stat_result]:
    """Every regular file under ``root`` (not following symlinks), by relative POSIX path."""
    found: dict[str, os.stat_result] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    found[Path(entry.path).relative_to(root).as_posix()] = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
    return found


class PollingSource:
    """For network mounts, where inotify sees nothing: a file is finished when its size and mtime stayed
    the same for ``stable_polls`` consecutive polls (a temp-then-rename shows up as a new stable name)."""

    def __init__(self, root: Path, queue: asyncio.Queue[Notice], interval: float, stable_polls: int) -> None:
        self.root = root
        self.queue = queue
        self.interval = interval
        self.stable_polls = stable_polls
        self._seen: dict[str, tuple[int, int, int]] = {}  # path -> (size, mtime_ns, unchanged polls)
        self._reported: dict[str, tuple[int, int]] = {}

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)

    async def poll_once(self) -> None:
        files = await asyncio.to_thread(walk_files, self.root)
        now = time.time()
        seen: dict[str, tuple[int, int, int]] = {}
        for rel, st in files.items():
            key = (st.st_size, st.st_mtime_ns)
            previous = self._seen.get(rel)
            count = previous[2] + 1 if previous and previous[:2] == key else 0
            seen[rel] = (*key, count)
            if count >= self.stable_polls and self._reported.get(rel) != key:
                self._reported[rel] = key
                self.queue.put_nowait((rel, now, FILE))
        self._seen = seen
        self._reported = {rel: key for rel, key in self._reported.items() if rel in seen}
