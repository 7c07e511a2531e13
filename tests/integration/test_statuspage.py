"""The status page against a real nats-server, with the real mover and ledger writing what it shows.

The page runs in this process (``StatusPage``) and is read with httpx as a browser's script reads it: the scans
and one scan's copies and checksums, the dead letters and a replay through the Replay button's route (checked
on the bus: the original is stored again and moved), the live event stream, and that nothing it serves is
unescaped HTML or a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from beamflow.common import deadletters, subjects
from beamflow.common import headers as hdr
from beamflow.common.catalog_config import CatalogConnection
from beamflow.common.checksums import ALGORITHM, file_checksum
from beamflow.common.config import BeamflowConfig
from beamflow.common.errors import DeadLetterNotFound
from beamflow.common.events import ScanIngested, ScanNew
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import harness, test_config, wait_for_record, wait_until
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.statuspage.app import StatusPage
from beamflow.statuspage.views import DeadLetterList, DeadLetterView, ReplayView, ScanDetail, ScanList, ScanRow
from tests.integration.test_mover import announce, write

REPLAY = {"X-Requested-With": "beamflow"}
INITIAL = re.compile(r'<script type="application/json" id="initial">(.*?)</script>', re.S)


@contextlib.asynccontextmanager
async def serving(config: BeamflowConfig, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The status page in this process, its live feed subscribed, and a client for it."""
    page = StatusPage(config, url)
    await page.start()
    try:
        await wait_until(lambda: page.health().live, timeout=15, what="the status page's live feed subscribed")
        async with httpx.AsyncClient(base_url=page.url, timeout=10) as client:
            yield client
    finally:
        await page.stop()


def embedded(page: httpx.Response) -> Any:
    """The data a page opens with, read back from its script block."""
    found = INITIAL.search(page.text)
    assert found, page.text[:500]
    return json.loads(found.group(1))


async def test_scans_and_a_scans_detail_show_its_copies_and_checksums(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path, destinations=("data", "archive"))
    src = write(tmp_path / "source/2026/run/scan_0001.h5", os.urandom(300_000))
    digest, size = file_checksum(src)
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, _),
        serving(config, nats_server.url) as client,
    ):
        scan = announce(tmp_path / "source", "bl832", ["2026/run/scan_0001.h5"])
        await bus.publish(scan)
        await wait_for_record(bus.js, scan.scan_id, lambda r: len(r.copies) == 2)
        listing = await client.get("/api/scans")
        detail = await client.get(f"/api/scans/{scan.scan_id}")
        index = await client.get("/")
        page = await client.get(f"/scan/{scan.scan_id}")
        missing = await client.get("/api/scans/bl832-0000000000000000")
        bad_state = await client.get("/api/scans", params={"state": "lost"})
        health = await client.get("/healthz")

    assert listing.status_code == 200 and listing.headers["content-type"] == "application/json"
    [row] = ScanList.model_validate_json(listing.content).scans
    assert (row.scan_id, row.beamline, row.scan_path, row.state) == (
        scan.scan_id,
        "bl832",
        "2026/run/scan_0001",
        "copied",
    )
    assert [(m.stage, m.label) for m in row.stages] == [
        ("detected", "detected"),
        ("copied", "data"),
        ("copied", "archive"),
    ]
    assert all(m.at is not None for m in row.stages)

    assert detail.status_code == 200
    shown = ScanDetail.model_validate_json(detail.content)
    assert shown.summary == row
    assert [(c.endpoint, c.source_endpoint) for c in shown.copies] == [("data", "source"), ("archive", "source")]
    for copy in shown.copies:
        assert [(f.path, f.size, f.checksum, f.algorithm) for f in copy.files] == [
            ("2026/run/scan_0001.h5", size, digest, ALGORITHM)
        ]
    assert [f.path for f in shown.files] == ["2026/run/scan_0001.h5"]
    assert [h.what for h in shown.history] == ["detected", "copy data", "copy archive"]
    assert shown.catalog == [] and shown.bundles == [] and shown.failures == []

    # The pages open with the same data the API serves, and forbid scripts from anywhere else.
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert [ScanRow.model_validate(r) for r in embedded(index)["scans"]] == [row]
    assert ScanDetail.model_validate(embedded(page)) == shown
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f"<title>scan {scan.scan_id}</title>" in page.text

    assert missing.status_code == 404 and "no scan" in missing.json()["error"]
    assert bad_state.status_code == 400 and "state must be one of" in bad_state.json()["error"]
    assert health.json() == {"status": "alive", "nats_connected": True, "live": True}


async def test_a_dead_letter_is_listed_and_its_replay_button_publishes_the_original_again(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    config = test_config(tmp_path)
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, events),
        serving(config, nats_server.url) as client,
    ):
        scan = announce(tmp_path / "source", "bl832", ["late.h5"])  # announced before the file exists
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1)
        [letter] = DeadLetterList.model_validate_json((await client.get("/api/deadletters")).content).dead_letters
        page = await client.get("/deadletters")
        forged = await client.post(f"/api/deadletters/{letter.seq}/replay")  # no header: not from our page
        still_there = await deadletters.get(bus.js, letter.seq)

        write(tmp_path / "source/late.h5", b"written after all")
        answer = await client.post(f"/api/deadletters/{letter.seq}/replay", headers=REPLAY)
        await events.wait_for(lambda c: len(c.new) == 2 and len(c.moved) == 1)
        stored = await bus.js.get_msg(subjects.SCANS_STREAM, ReplayView.model_validate_json(answer.content).stream_seq)
        after = DeadLetterList.model_validate_json((await client.get("/api/deadletters")).content)
        again = await client.post(f"/api/deadletters/{letter.seq}/replay", headers=REPLAY)
        not_found = None
        try:
            await deadletters.get(bus.js, letter.seq)
        except DeadLetterNotFound as exc:
            not_found = exc

    assert (letter.scan_id, letter.error_type, letter.stage, letter.service) == (
        scan.scan_id,
        "SourceMissing",
        "new",
        "mover",
    )
    assert letter.subject == "scan.new.bl832" and letter.permanent
    assert embedded(page)["dead_letters"][0]["seq"] == letter.seq
    assert forged.status_code == 403 and "X-Requested-With" in forged.json()["error"]
    assert still_there.seq == letter.seq

    assert answer.status_code == 200, answer.text
    replayed = ReplayView.model_validate_json(answer.content)
    assert (replayed.seq, replayed.scan_id, replayed.subject, replayed.stream, replayed.duplicate) == (
        letter.seq,
        scan.scan_id,
        "scan.new.bl832",
        subjects.SCANS_STREAM,
        False,
    )
    # On the bus: the original, stored again as a new message with the replay's id, and moved this time.
    assert stored.subject == "scan.new.bl832"
    assert stored.headers is not None and stored.headers[hdr.MSG_ID] == f"replay:{letter.seq}"
    assert ScanNew.model_validate_json(stored.data or b"") == scan
    assert events.moved[0].scan_id == scan.scan_id
    assert after.dead_letters == [] and not_found is not None
    assert again.status_code == 404 and "no dead letter" in again.json()["error"]


async def read_events(lines: AsyncIterator[str], wanted: Any, seen: list[tuple[str, Any]]) -> None:
    """Read Server-Sent Events off a stream's ``lines`` into ``seen`` until ``wanted(seen)``."""
    kind, data = "", ""
    async for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and kind:
            seen.append((kind, json.loads(data)))
            kind, data = "", ""
            if wanted(seen):
                return


async def test_the_event_stream_sends_a_new_scan_as_it_arrives(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    write(tmp_path / "source/fresh.h5", b"x" * 10_000)
    seen: list[tuple[str, Any]] = []
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, _),
        serving(config, nats_server.url) as client,
        client.stream("GET", "/api/events") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        scan = announce(tmp_path / "source", "bl832", ["fresh.h5"])
        await bus.publish(scan)

        def copied(found: list[tuple[str, Any]]) -> bool:
            return any(k == "scan" and any(m["stage"] == "copied" for m in d["stages"]) for k, d in found)

        await asyncio.wait_for(read_events(lines, copied, seen), timeout=15)
        await bus.js.publish("scan.new.bl832", b"{not json", headers={hdr.MSG_ID: "not-json-1"})

        def mover_gave_up(found: list[tuple[str, Any]]) -> bool:
            return any(k == "deadletter" and d["service"] == "mover" for k, d in found)

        await asyncio.wait_for(read_events(lines, mover_gave_up, seen), timeout=15)

    activity = [d for k, d in seen if k == "activity"]
    assert activity[0]["subject"] == "scan.new.bl832" and activity[0]["scan_id"] == scan.scan_id
    assert "detected on source" in activity[0]["summary"]
    rows = [ScanRow.model_validate(d) for k, d in seen if k == "scan"]
    assert {r.scan_id for r in rows} == {scan.scan_id}
    assert [(m.stage, m.label) for m in rows[-1].stages] == [("detected", "detected"), ("copied", "data")]
    letter = next(DeadLetterView.model_validate(d) for k, d in seen if k == "deadletter" and d["service"] == "mover")
    assert (letter.subject, letter.service, letter.error_type, letter.scan_id) == (
        "scan.new.bl832",
        "mover",
        "InvalidEvent",
        None,
    )


async def test_pages_escape_what_they_show_and_never_show_a_secret(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    secret = "s3cret-catalog-pw"
    connection = CatalogConnection(url=f"https://ingestor:{secret}@scicat.example.org:8443/api/v3/")
    config = test_config(tmp_path, catalog_connection=connection)
    evil = '<img src=x onerror="alert(1)">'
    pid = "20.500.12269/</script><script>alert(2)</script>"
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, events),
        serving(config, nats_server.url) as client,
    ):
        scan = announce(tmp_path / "source", "bl832", [f"{evil}.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1)  # no such file
        await bus.publish(
            ScanIngested(scan_id=scan.scan_id, beamline="bl832", catalog="scicat", pid=pid, dataset_kind="raw")
        )
        await wait_for_record(bus.js, scan.scan_id, lambda r: bool(r.failures) and "catalog:raw" in r.external_ids)
        answers = [await client.get(path) for path in ("/", f"/scan/{scan.scan_id}", "/deadletters", "/healthz")]
        answers += [await client.get(f"/api{path}") for path in ("/scans", f"/scans/{scan.scan_id}", "/deadletters")]

    index, page, letters = answers[0], answers[1], answers[2]
    for html in (index, page, letters):
        assert html.status_code == 200
        assert "<img" not in html.text and "<script>alert" not in html.text
        assert html.text.count("</script>") == 2  # the data block's and the app script's: none from the data
    assert embedded(index)["scans"][0]["scan_path"] == evil
    detail = ScanDetail.model_validate(embedded(page))
    assert detail.summary.scan_path == evil
    [link] = detail.catalog
    assert link.pid == pid
    assert (
        link.url
        == "https://scicat.example.org:8443/api/v3/Datasets/20.500.12269%2F%3C%2Fscript%3E%3Cscript%3Ealert%282%29%3C%2Fscript%3E"
    )
    assert [s.stage for s in detail.summary.stages] == ["detected", "catalogued", "failed"]
    for answer in answers:
        assert secret not in answer.text and "ingestor:" not in answer.text
        assert nats_server.url not in answer.text
