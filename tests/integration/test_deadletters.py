"""Dead-letter operations against a real nats-server, on dead letters the real mover (and runtime) wrote.

Each test makes the mover give up on something (a malformed event, an unknown beamline, a missing file),
then lists, shows, replays or purges through ``beamflow.common.deadletters`` as ``beamflow dlq`` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from beamflow.common import deadletters, subjects
from beamflow.common import headers as hdr
from beamflow.common.config import BeamflowConfig
from beamflow.common.deadletters import DeadLetterFilter
from beamflow.common.errors import (
    DeadLetterNotFound,
    OriginalNotCaptured,
    OriginalSubjectUnbound,
    PermanentError,
)
from beamflow.common.events import FileCopy, OriginalMessage, RetentionHold, ScanMoved
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import EventCollector
from beamflow.common.runtime import Runtime, dead_letter
from beamflow.common.service import Context, Handler, Service
from beamflow.common.telemetry import tracer
from beamflow.common.testing import harness, test_config
from beamflow.mover.service import build as build_mover
from nats.js import JetStreamContext
from tests.integration.test_mover import announce, write


def refusing(name: str, subject: str, model: type[ScanMoved] | type[RetentionHold]) -> Service:
    """A stand-in for a later service that gives up on every message it gets, so it is dead-lettered."""

    async def refuse(ctx: Context, event: object) -> None:
        raise PermanentError(f"{name} refuses everything")

    return Service(name, handlers=[Handler(model.stage, subject, model, refuse)])


async def fail_malformed(bus: Runtime, events: EventCollector, payload: bytes = b"{not json") -> None:
    before = len(events.failed)
    await bus.js.publish("scan.new.bl832", payload, headers={hdr.MSG_ID: f"bad-{before}"})
    await events.wait_for(lambda c: len(c.failed) == before + 1)


async def only(js: JetStreamContext, **where: str) -> list[deadletters.DeadLetter]:
    return await deadletters.read(js, DeadLetterFilter(**where))


@contextlib.asynccontextmanager
async def bare(url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream with no service or collector attached, for changing streams under nobody's feet."""
    nc = await nats.connect(url)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def test_list_filters_by_stage_beamline_and_service_and_show_has_the_original(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    write(tmp_path / "source/a.h5", b"a")
    write(tmp_path / "source/ok.h5", b"ok")
    catalog = refusing("catalog-stub", subjects.stage_filter(subjects.MOVED), ScanMoved)
    started = datetime.now(UTC)
    async with harness(config, nats_server.url, build_mover(config), catalog) as (bus, events):
        await fail_malformed(bus, events)
        unknown = announce(tmp_path / "source", "bl999", ["a.h5"])
        await bus.publish(unknown)
        await events.wait_for(lambda c: len(c.failed) == 2)
        await bus.publish(announce(tmp_path / "source", "bl832", ["ok.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 3)  # the catalog stub refused the scan.moved

        everything = await deadletters.read(bus.js)
        new = await only(bus.js, stage="new")
        moved = await only(bus.js, stage="moved")
        bl999 = await only(bus.js, beamline="bl999")
        bl832 = await only(bus.js, beamline="bl832")
        mover_bl832 = await only(bus.js, service="mover", beamline="bl832")
        nothing = await only(bus.js, stage="archived")
        malformed = await deadletters.get(bus.js, new[0].seq)

    assert len(everything) == 3
    assert [x.seq for x in everything] == sorted(x.seq for x in everything)
    assert all(started - timedelta(seconds=1) <= x.stored_at <= datetime.now(UTC) for x in everything)
    assert sorted(x.event.error_type for x in new) == ["InvalidEvent", "UnknownBeamline"]
    assert {x.event.service for x in new} == {"mover"}
    assert [(x.event.service, x.stage, x.event.error_type) for x in moved] == [
        ("catalog-stub", "moved", "PermanentError")
    ]
    assert [(x.event.scan_id, x.event.error_type) for x in bl999] == [(unknown.scan_id, "UnknownBeamline")]
    assert {x.seq for x in bl832} == {new[0].seq, moved[0].seq}
    assert [x.event.error_type for x in mover_bl832] == ["InvalidEvent"]
    assert nothing == []
    assert malformed.original.subject == "scan.new.bl832" and malformed.original.data == "{not json"
    assert malformed.original.headers[hdr.MSG_ID] == "bad-0"
    assert malformed.original.stream == subjects.SCANS_STREAM and "Invalid JSON" in malformed.event.reason


async def test_replay_after_creating_the_missing_file_is_moved_like_a_new_scan(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl832", ["late.h5"])
        with tracer().start_as_current_span("detector"):  # so the original carries a trace context
            await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1)
        (letter,) = await deadletters.read(bus.js)
        assert letter.event.error_type == "SourceMissing"

        write(tmp_path / "source/late.h5", b"arrived late")
        replayed = await deadletters.replay(bus.js, letter.seq)
        await events.wait_for(lambda c: len(c.moved) == 1)
        stored = await bus.js.get_msg(subjects.SCANS_STREAM, replayed.stream_seq)
        left = await deadletters.read(bus.js)
        with pytest.raises(DeadLetterNotFound, match=f"no dead letter with sequence {letter.seq}"):
            await deadletters.replay(bus.js, letter.seq)

    assert replayed.stream == subjects.SCANS_STREAM and not replayed.duplicate and not replayed.kept
    assert letter.original.stream_seq is not None and replayed.stream_seq > letter.original.stream_seq
    assert events.moved[0].scan_id == scan.scan_id and events.moved[0].copied
    assert (tmp_path / "data/late.h5").read_bytes() == b"arrived late"
    assert len(events.failed) == 1  # not failed again
    assert left == []
    assert stored.subject == "scan.new.bl832" and stored.data == letter.original.data.encode()
    assert stored.headers is not None
    assert stored.headers[hdr.MSG_ID] == f"replay:{letter.seq}"
    assert stored.headers[hdr.TRACEPARENT] == letter.original.headers[hdr.TRACEPARENT]


async def test_replay_to_a_mover_whose_config_now_knows_the_beamline(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    old = test_config(tmp_path)
    write(tmp_path / "source/a.h5", b"from 9.9.9")
    async with harness(old, nats_server.url, build_mover(old)) as (bus, events):
        scan = announce(tmp_path / "source", "bl999", ["a.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1)
    assert events.failed[0].error_type == "UnknownBeamline"

    fixed: BeamflowConfig = test_config(tmp_path, beamline="bl999")  # the operator added the beamline
    async with harness(fixed, nats_server.url, build_mover(fixed)) as (bus, events):
        (letter,) = await deadletters.read(bus.js, DeadLetterFilter(beamline="bl999"))
        replayed = await deadletters.replay(bus.js, letter.seq)
        await events.wait_for(lambda c: len(c.moved) == 1)
        left = await deadletters.read(bus.js)
    assert events.moved[0].scan_id == scan.scan_id and events.moved[0].beamline == "bl999"
    assert (tmp_path / "data/a.h5").read_bytes() == b"from 9.9.9"
    assert replayed.stream == subjects.SCANS_STREAM and left == []


async def test_binary_original_is_replayed_byte_for_byte_and_a_second_replay_is_dropped(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    payload = b"\xff\xfe\x00 not utf-8"
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await fail_malformed(bus, events, payload)
        (letter,) = await deadletters.read(bus.js)
        first = await deadletters.replay(bus.js, letter.seq, keep=True)
        await events.wait_for(lambda c: len(c.failed) == 2)  # the mover took it as a new message, and refused it
        stored = await bus.js.get_msg(subjects.SCANS_STREAM, first.stream_seq)
        again = await deadletters.replay(bus.js, letter.seq, keep=True)
        scans = await bus.js.stream_info(subjects.SCANS_STREAM)
        kept = await deadletters.get(bus.js, letter.seq)

    assert letter.original.data_encoding == "base64"
    assert stored.data == payload
    second = events.failed[1]
    assert second.original.stream_seq == first.stream_seq and second.deliveries == 1
    assert again.duplicate and again.stream_seq == first.stream_seq
    assert scans.state.messages == 2  # the original and one replay
    assert kept.seq == letter.seq and first.kept


async def test_purge_removes_exactly_the_selected_dead_letters(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    for name in ("a.h5", "b.h5"):
        write(tmp_path / "source" / name, b"x")
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await fail_malformed(bus, events)
        for name in ("a.h5", "b.h5"):
            await bus.publish(announce(tmp_path / "source", "bl999", [name]))
        await bus.publish(announce(tmp_path / "source", "bl832", ["missing.h5"]))
        await events.wait_for(lambda c: len(c.failed) == 4)
        letters = await deadletters.read(bus.js)
        invalid = next(x.seq for x in letters if x.event.error_type == "InvalidEvent")
        missing = next(x.seq for x in letters if x.event.error_type == "SourceMissing")

        by_seq = await deadletters.purge(bus.js, [invalid])
        after_seq = {x.seq for x in await deadletters.read(bus.js)}
        by_filter = await deadletters.purge(bus.js, DeadLetterFilter(beamline="bl999"))
        after_filter = [x.seq for x in await deadletters.read(bus.js)]
        with pytest.raises(DeadLetterNotFound, match=f"sequence {invalid}, 9999"):
            await deadletters.purge(bus.js, [missing, invalid, 9999])
        untouched = [x.seq for x in await deadletters.read(bus.js)]

    assert [x.seq for x in by_seq] == [invalid]
    assert after_seq == {x.seq for x in letters} - {invalid}
    assert sorted(x.event.beamline for x in by_filter) == ["bl999", "bl999"]
    assert after_filter == [missing]
    assert untouched == [missing]  # a typo in the list purges nothing


async def test_replaying_an_expired_hold_keeps_its_stream_and_leaves_the_pending_hold_alone(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    pruner = refusing("pruner-stub", subjects.hold_filter(subjects.HOLD_EXPIRED), RetentionHold)
    files = [FileCopy(path="h.h5", size=1, checksum="0" * 32, algorithm="xxh3-128")]

    def hold(expires_at: datetime, action: str) -> RetentionHold:
        return RetentionHold(
            scan_id="bl832-held",
            beamline="bl832",
            endpoint="source",
            check_endpoint="data",
            files=files,
            expires_at=expires_at,
            action=action,  # type: ignore[arg-type]
        )

    async with harness(config, nats_server.url, pruner) as (bus, events):
        expiring = hold(datetime.now(UTC) + timedelta(seconds=1), "placed")
        await bus.publish(expiring)  # the server fires it onto hold.expired... in about a second
        await events.wait_for(lambda c: len(c.failed) == 1, timeout=30)
        (letter,) = await only(bus.js, stage="hold")
        await bus.publish(hold(datetime.now(UTC) + timedelta(hours=1), "extended"))  # a hold placed since
        replayed = await deadletters.replay(bus.js, letter.seq)
        await events.wait_for(lambda c: len(c.failed) == 2)  # the pruner got the replay as a new message
        pending = await bus.js.stream_info(subjects.HOLDS_STREAM, subjects_filter=expiring.subject())

    assert letter.original.subject == expiring.expiry_subject() and letter.stage == "hold"
    assert letter.original.headers.get("Nats-Schedule-Next") == "purge"  # what the server put on the fired one
    assert replayed.stream == subjects.HOLDS_STREAM
    assert events.failed[1].original.stream_seq == replayed.stream_seq
    assert (pending.state.subjects or {}).get(expiring.subject()) == 1  # the extended hold is still pending


async def test_replay_refuses_originals_it_cannot_publish_and_keeps_the_dead_letter(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        await fail_malformed(bus, events)
        # What the runtime writes when the server's max-deliveries advisory names a message already gone.
        gone = OriginalMessage(subject="", data="", stream=subjects.SCANS_STREAM, stream_seq=41)
        await bus.publish(dead_letter("mover", "mover-scan-new", gone, "no ack", "MaxDeliveriesExceeded", False, 4))
        await events.wait_for(lambda c: len(c.failed) == 2)
        malformed, uncaptured = await deadletters.read(bus.js)
    async with bare(nats_server.url) as js:
        await js.delete_stream(subjects.SCANS_STREAM)  # e.g. renamed by a later version
        with pytest.raises(OriginalSubjectUnbound, match=r"'scan\.new\.bl832' is not bound to any stream"):
            await deadletters.replay(js, malformed.seq)
        with pytest.raises(OriginalNotCaptured, match="no original message to replay"):
            await deadletters.replay(js, uncaptured.seq)
        kept = [x.seq for x in await deadletters.read(js)]
    assert kept == [malformed.seq, uncaptured.seq]


async def test_reading_an_empty_or_missing_stream_finds_nothing(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    async with bare(nats_server.url) as js:
        assert await deadletters.read(js) == []  # no service ever ran: no stream at all
    config = test_config(tmp_path)
    async with harness(config, nats_server.url) as (bus, _):
        assert await deadletters.read(bus.js) == []
        with pytest.raises(DeadLetterNotFound):
            await deadletters.get(bus.js, 1)
