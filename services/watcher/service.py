"""Declares the watcher service: no consumers, one background task per configured beamline."""

from __future__ import annotations

import asyncio

from beamflow.common.config import BeamflowConfig
from beamflow.common.events import ScanNew
from beamflow.common.runtime import Runtime
from beamflow.common.service import Service
from beamflow.watcher.watcher import BeamlineWatcher, spool_for


def build(config: BeamflowConfig, beamlines: list[str] | None = None) -> Service:
    names = beamlines if beamlines is not None else list(config.beamlines)

    async def watch_all(runtime: Runtime) -> None:
        spools = [spool_for(config, name) for name in names]
        watchers = [BeamlineWatcher(config, name, runtime, spool) for name, spool in zip(names, spools, strict=True)]
        try:
            await asyncio.gather(*(w.run() for w in watchers))
        finally:
            for spool in spools:
                spool.close()

    return Service(name="watcher", background=[watch_all], needs_bus_at_start=False, emits=(ScanNew,))
