"""The analysis jobs that run now, in a KV bucket: the analyzer writes each job's id as soon as the site
accepts it, and an operator's ``beamflow job cancel SCAN`` marks it; the analyzer sees the mark on its next
poll and cancels the job at the site. A job that succeeded is ``bringing_back`` until its outputs are
verified copies (a later delivery follows it rather than running it again); an entry stays after the job
ends, with how it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from beamflow.common import subjects
from beamflow.common.events import utcnow
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from pydantic import BaseModel, Field


class JobEntry(BaseModel):
    scan_id: str
    beamline: str
    analysis: str
    site: str
    job_id: str | None = None
    state: Literal["staging", "running", "bringing_back", "ended"] = "staging"
    end: str | None = Field(default=None, description="completed, failed, timeout or cancelled, once ended.")
    cancel_requested: bool = False
    updated_at: datetime = Field(default_factory=utcnow)

    @property
    def key(self) -> str:
        return job_key(self.scan_id, self.analysis)


def job_key(scan_id: str, analysis: str) -> str:
    return f"{scan_id}.{analysis}"


class JobRegistry:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> JobRegistry:
        return cls(await js.key_value(subjects.JOBS_BUCKET))

    async def put(self, entry: JobEntry) -> None:
        entry = entry.model_copy(update={"updated_at": utcnow()})
        await self.kv.put(entry.key, entry.model_dump_json().encode())

    async def get(self, scan_id: str, analysis: str) -> JobEntry | None:
        try:
            found = await self.kv.get(job_key(scan_id, analysis))
        except KeyNotFoundError:
            return None
        return JobEntry.model_validate_json(found.value) if found.value else None

    async def all(self) -> list[JobEntry]:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return []
        entries = []
        for key in keys:
            scan_id, _, analysis = key.partition(".")
            entry = await self.get(scan_id, analysis)
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda e: e.updated_at)

    async def request_cancel(self, scan_id: str) -> list[JobEntry]:
        """Mark every running job of the scan to be cancelled; the ones marked (none: nothing runs)."""
        marked = []
        for entry in await self.all():
            if entry.scan_id == scan_id and entry.state in ("staging", "running"):
                entry = entry.model_copy(update={"cancel_requested": True})
                await self.put(entry)
                marked.append(entry)
        return marked
