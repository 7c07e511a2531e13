"""Dead-letter operations: read the DEADLETTERS stream, replay an original message, purge dead letters.

A dead letter is a ``ScanFailed`` event on ``scan.failed.<beamline>``; it carries the message a service
gave up on (subject, data, headers). This module is what ``beamflow dlq`` runs; it treats the original
subject generically (``scan.new.bl832``, ``hold.expired.bl832.<scan>.<endpoint>``, ...), so a stream added
later needs nothing here.

Replaying publishes the original again as a *new* stream message, so the consuming service's durable
consumer delivers it like any other; the dead letter is then deleted, so it cannot be replayed twice by
accident. The replay's ``Nats-Msg-Id`` is derived from the dead letter's sequence: replaying the same dead
letter twice within the duplicate window (``keep=True``, or a crash between publish and delete) is dropped by
the server.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from beamflow.common import headers as hdr
from beamflow.common import subjects
from beamflow.common.errors import (
    DeadLetterNotFound,
    DeadLetterUnreadable,
    OriginalNotCaptured,
    OriginalSubjectUnbound,
)
from beamflow.common.events import OriginalMessage, ScanFailed
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from pydantic import ValidationError

log = logging.getLogger(__name__)

STREAM = subjects.DEAD_LETTER_STREAM

#: How long to wait for the next stored dead letter while reading; only reached when dead letters were
#: deleted between counting them and reading them.
READ_TIMEOUT = 2.0

#: Headers that made the server act when the original was stored. Sent again they would act again, on
#: today's stream: a rollup purges the subject; ``Nats-Scheduler`` with ``Nats-Schedule-Next: purge`` (on a
#: message a schedule fired, e.g. an expired hold) cancels the schedule pending now on the subject it names,
#: such as a hold extended since; ``Nats-Expected-*`` are checked against today's sequences. The old message
#: id is replaced.
_DROPPED_HEADERS = frozenset(h.lower() for h in (hdr.MSG_ID, "Nats-Rollup", "Nats-Scheduler", "Nats-Schedule-Next"))
_DROPPED_PREFIXES = ("nats-expected-", "nats-batch-")


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter: its sequence in DEADLETTERS (what operators name it by) and when it was stored."""

    seq: int
    stored_at: datetime
    event: ScanFailed

    @property
    def original(self) -> OriginalMessage:
        return self.event.original

    @property
    def stage(self) -> str:
        return stage_of(self.event.original.subject)


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to act on; ``None`` matches everything."""

    stage: str | None = None
    beamline: str | None = None
    service: str | None = None

    def subject(self) -> str:
        """The server-side filter: dead letters are stored per beamline."""
        if self.beamline is None:
            return subjects.stage_filter(subjects.FAILED)
        return subjects.scan_subject(subjects.FAILED, self.beamline)

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.stage is None or letter.stage == self.stage)
            and (self.beamline is None or letter.event.beamline == self.beamline)
            and (self.service is None or letter.event.service == self.service)
        )

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in vars(self).items() if value is not None]
        return " ".join(parts) or "all"


@dataclass(frozen=True)
class Replayed:
    """What a replay did: where the original went, and whether the server took it as new."""

    letter: DeadLetter
    stream: str
    stream_seq: int
    duplicate: bool
    kept: bool


def stage_of(subject: str) -> str:
    """``scan.<stage>.<beamline>`` gives the stage; any other subject its first token (``hold``)."""
    tokens = subject.split(".")
    if tokens[0] == "scan" and len(tokens) >= 3:
        return tokens[1]
    return tokens[0]


def replay_msg_id(seq: int) -> str:
    return f"replay:{seq}"


def replay_headers(original: dict[str, str], seq: int) -> dict[str, str]:
    """The original headers (trace context included) minus server directives, with the replay's message id."""
    kept = {
        name: value
        for name, value in original.items()
        if name.lower() not in _DROPPED_HEADERS and not name.lower().startswith(_DROPPED_PREFIXES)
    }
    kept[hdr.MSG_ID] = replay_msg_id(seq)
    return kept


def original_bytes(original: OriginalMessage, seq: int) -> bytes:
    if original.data_encoding == "utf-8":
        return original.data.encode()
    try:
        return base64.b64decode(original.data, validate=True)
    except binascii.Error as exc:
        raise DeadLetterUnreadable(
            f"dead letter {seq}: its original data is marked base64 but is not valid base64 ({exc})"
        ) from exc


def _parse(seq: int, stored_at: datetime | None, data: bytes | None) -> DeadLetter:
    try:
        event = ScanFailed.model_validate_json(data or b"")
    except ValidationError as exc:
        raise DeadLetterUnreadable(
            f"message {seq} in {STREAM} is not a dead letter this beamflow can read "
            f"({exc.error_count()} validation error(s)); inspect it with a NATS client"
        ) from exc
    if stored_at is None:
        raise DeadLetterUnreadable(f"message {seq} in {STREAM} came back without its stored time")
    return DeadLetter(seq=seq, stored_at=stored_at, event=event)


async def _count(js: JetStreamContext, subject: str) -> int:
    try:
        info = await js.stream_info(STREAM, subjects_filter=subject)
    except NotFoundError:
        return 0  # no service has started yet, so nothing has been dead-lettered
    return sum((info.state.subjects or {}).values())


async def read(js: JetStreamContext, where: DeadLetterFilter | None = None) -> list[DeadLetter]:
    """Every dead letter matching ``where``, oldest first, read in one pass of an ordered consumer."""
    where = where or DeadLetterFilter()
    if await _count(js, where.subject()) == 0:
        return []  # an ordered consumer on nothing would only time out
    sub = await js.subscribe(where.subject(), stream=STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    found: list[DeadLetter] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=READ_TIMEOUT)
            except TimeoutError:
                break
            meta = msg.metadata
            try:
                letter = _parse(meta.sequence.stream, meta.timestamp, msg.data)
            except DeadLetterUnreadable as exc:
                log.warning("skipped an unreadable dead letter", extra={"error": str(exc)})
            else:
                if where.matches(letter):
                    found.append(letter)
            if meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return found


async def get(js: JetStreamContext, seq: int) -> DeadLetter:
    """The dead letter stored at ``seq``, or ``DeadLetterNotFound``."""
    try:
        raw = await js.get_msg(STREAM, seq)
    except NotFoundError:
        raise DeadLetterNotFound(
            f"no dead letter with sequence {seq} in {STREAM}: it was replayed or purged already, or never "
            "existed; `beamflow dlq list` shows the sequences there are"
        ) from None
    return _parse(seq, raw.time, raw.data)


async def _stream_for(js: JetStreamContext, original: OriginalMessage, seq: int) -> str:
    if not original.subject:
        raise OriginalNotCaptured(
            f"dead letter {seq} has no original message to replay: it was gone from "
            f"{original.stream or 'its stream'} (sequence {original.stream_seq}) before the dead letter was "
            "written; re-announce the scan (e.g. restart the watcher to reconcile), then purge this dead letter"
        )
    try:
        return str(await js.find_stream_name_by_subject(original.subject))
    except NotFoundError:
        raise _unbound(original, seq) from None


def _unbound(original: OriginalMessage, seq: int) -> OriginalSubjectUnbound:
    return OriginalSubjectUnbound(
        f"dead letter {seq}: its original subject {original.subject!r} is not bound to any stream any more "
        f"(it was in {original.stream or 'an unknown stream'}); nothing was published and the dead letter is "
        "kept. Start the service that owns that stream (it creates it), or purge the dead letter"
    )


async def _delete(js: JetStreamContext, seq: int) -> bool:
    """Delete one dead letter; False if it was already gone (another operator got there first)."""
    try:
        return bool(await js.delete_msg(STREAM, seq))
    except APIError:
        try:
            await js.get_msg(STREAM, seq)
        except NotFoundError:
            return False
        raise


async def replay(js: JetStreamContext, seq: int, keep: bool = False) -> Replayed:
    """Publish dead letter ``seq``'s original to its original subject again, then delete the dead letter.

    The consumer sees a new stream message (new sequence, first delivery). ``keep`` leaves the dead letter
    in place, e.g. to replay it into a test system first.
    """
    letter = await get(js, seq)
    original = letter.original
    stream = await _stream_for(js, original, seq)
    data = original_bytes(original, seq)
    try:
        ack = await js.publish(original.subject, data, stream=stream, headers=replay_headers(original.headers, seq))
    except NoStreamResponseError:
        raise _unbound(original, seq) from None  # the stream went away between lookup and publish
    if not keep:
        await _delete(js, seq)
    return Replayed(letter=letter, stream=stream, stream_seq=ack.seq, duplicate=bool(ack.duplicate), kept=keep)


async def select(js: JetStreamContext, selection: DeadLetterFilter | Sequence[int]) -> list[DeadLetter]:
    """The dead letters a filter matches, or the ones named by sequence (all of them, or an error naming
    every missing one, so a typo acts on nothing)."""
    if isinstance(selection, DeadLetterFilter):
        return await read(js, selection)
    letters: list[DeadLetter] = []
    missing: list[int] = []
    for seq in dict.fromkeys(selection):
        try:
            letters.append(await get(js, seq))
        except DeadLetterNotFound:
            missing.append(seq)
    if missing:
        listed = ", ".join(str(s) for s in missing)
        raise DeadLetterNotFound(
            f"no dead letter with sequence {listed} in {STREAM}; nothing was changed. "
            "`beamflow dlq list` shows the sequences there are"
        )
    return letters


async def purge(js: JetStreamContext, selection: DeadLetterFilter | Sequence[int]) -> list[DeadLetter]:
    """Delete the selected dead letters; returns the ones this call deleted."""
    deleted: list[DeadLetter] = []
    for letter in await select(js, selection):
        if await _delete(js, letter.seq):
            deleted.append(letter)
    return deleted
