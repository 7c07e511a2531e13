"""The status page in a real headless Chromium, as an operator opens it.

Real services (mover, ledger, pruner, and the ingestor with the local SciCat) run in this process against a real
nats-server; the page runs as its own process, ``beamflow status-page``, as ``beamflow up`` and a Deployment run
it. One scan is detected, copied, catalogued and pruned at its source; another fails (its file is missing).

Chromium's screenshot of ``/`` must show, in each stage's own colour (read from the page's stylesheet), the
stages those scans went through and none of the others; its DOM after the page's script ran must hold each
scan's row with exactly its stages, the detail page the checksum and the catalog link, the dead-letter page a
Replay button. ``BEAMFLOW_SAVE_SCREENSHOT=1`` also copies the screenshot to ``docs/statuspage.png``.

Live updates are checked in the browser too, driving Chromium over its DevTools pipe: a page left open shows a
new scan's row, and its stages as they happen, without being reloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from beamflow.common.catalog_config import BeamlineCatalog, CatalogConnection, CatalogDefaults
from beamflow.common.checksums import file_checksum
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import RetentionRule
from beamflow.common.natsserver import EmbeddedNats, free_port
from beamflow.common.secrets import SecretRef
from beamflow.common.simulate import write_scan_832
from beamflow.common.testing import config_to_yaml, harness, test_config, wait_for_record
from beamflow.ingestor.service import build as build_ingestor
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from beamflow.pruner.service import build as build_pruner
from beamflow.scicat_local import LocalSciCat
from beamflow.statuspage.timeline import STAGES
from PIL import Image
from tests.integration.test_mover import announce, write

REPO = Path(__file__).resolve().parents[2]
PASSWORD_ENV = "BEAMFLOW_TEST_SCICAT_PASSWORD"
SAVE_ENV = "BEAMFLOW_SAVE_SCREENSHOT"
#: Fewest pixels of a stage's colour that count as "shown": one stage chip is a few thousand.
MIN_PIXELS = 500
#: How far a pixel may be from a stage colour per channel (Chromium draws solid fills exactly in sRGB).
TOLERANCE = 3
STAGE_RULE = re.compile(r"\.stage-([a-z]+) \{ background: #([0-9a-f]{6}); \}")


@pytest.fixture
def scicat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalSciCat]:
    with LocalSciCat(tmp_path / "scicat" / "catalog.sqlite") as local:
        monkeypatch.setenv(PASSWORD_ENV, local.password)
        yield local


def pipeline_config(tmp_path: Path, scicat: LocalSciCat) -> BeamflowConfig:
    """8.3.2 on source -> data; data's copy is catalogued; the source is pruned a second after its copy."""
    catalog = BeamlineCatalog(
        destination="data",
        technique="tomography-832",
        creation_location="/ALS/test",
        defaults=CatalogDefaults(
            owner_group="staff", contact_email="staff@example.org", principal_investigator="Staff"
        ),
    )
    return test_config(
        tmp_path,
        retention={"source": RetentionRule(keep_for=timedelta(seconds=1), check_endpoint="data")},
        catalog=catalog,
        catalog_connection=CatalogConnection(
            url=scicat.url, username=scicat.username, password=SecretRef(env=PASSWORD_ENV)
        ),
    )


@contextlib.asynccontextmanager
async def status_page(config: BeamflowConfig, nats_url: str, folder: Path) -> AsyncIterator[str]:
    """``beamflow status-page`` in its own process; its URL once its live feed is subscribed."""
    port = free_port()
    log_path = folder / "status-page.log"
    command = [sys.executable, "-m", "beamflow.common.cli", "status-page", "--port", str(port)]
    command += ["--config", str(config_to_yaml(config, folder / "config.yaml")), "--nats", nats_url]
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/healthz")).json().get("live"):
                        break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the status page did not come up:\n{log_path.read_text()[-3000:]}")
                await asyncio.sleep(0.05)  # waiting on another process's HTTP server and subscriptions
        yield url
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, log_path.read_text()[-3000:]


def chromium_flags(profile: Path) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--force-color-profile=srgb",
        "--hide-scrollbars",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ]


async def browse(chromium: str, profile: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args`` (``--screenshot=FILE`` or ``--dump-dom``); its stdout.

    ``--dump-dom`` is taken once the page has loaded, after its script rendered the data the page carries.
    (``--virtual-time-budget`` cannot be used: virtual time waits for open requests, and the event stream
    never ends.)
    """
    proc = await asyncio.create_subprocess_exec(
        chromium,
        *chromium_flags(profile),
        *args,
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return out.decode()


def stage_colours(css: str) -> dict[str, tuple[int, int, int]]:
    colours = {m[1]: (int(m[2][0:2], 16), int(m[2][2:4], 16), int(m[2][4:6], 16)) for m in STAGE_RULE.finditer(css)}
    assert sorted(colours) == sorted(STAGES), f"the stylesheet must give every stage one colour: {colours}"
    assert len(set(colours.values())) == len(colours), "two stages share a colour"
    return colours


def pixels_of(image: Path, colours: dict[str, tuple[int, int, int]]) -> dict[str, int]:
    """How many pixels of the screenshot have each stage's colour."""
    rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)
    return {
        stage: int((np.abs(rgb - np.array(colour, dtype=np.int16)) <= TOLERANCE).all(axis=-1).sum())
        for stage, colour in colours.items()
    }


def row_stages(dom: str, scan_id: str) -> list[str]:
    """The stages the rendered table shows for one scan, in column order."""
    row = re.search(rf'<tr data-scan="{re.escape(scan_id)}"[^>]*>(.*?)</tr>', dom, re.S)
    assert row, f"no row for {scan_id} in the page's DOM"
    return re.findall(r'data-stage="([a-z]+)"', row.group(1))


async def test_the_page_shows_each_scans_stages_in_a_real_browser(
    tmp_path: Path, nats_server: EmbeddedNats, scicat: LocalSciCat, chromium: str
) -> None:
    config = pipeline_config(tmp_path, scicat)
    h5 = write_scan_832(tmp_path / "source", "2026/tomo_0001", np.random.default_rng(7))
    digest, _ = file_checksum(h5)
    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "statuspage.png"
    services = (build_mover(config), build_ledger(config), build_pruner(config), build_ingestor(config))
    async with (
        harness(config, nats_server.url, *services) as (bus, events),
        status_page(config, nats_server.url, tmp_path) as url,
    ):
        done = announce(tmp_path / "source", "bl832", ["2026/tomo_0001.h5"])
        await bus.publish(done)
        await events.wait_for(lambda c: len(c.pruned) == 1 and len(c.ingested) == 1, timeout=30)
        record = await wait_for_record(
            bus.js, done.scan_id, lambda r: "source" in r.prunes and "catalog:raw" in r.external_ids
        )
        lost = announce(tmp_path / "source", "bl832", ["2026/tomo_0002.h5"])  # never written
        await bus.publish(lost)
        await wait_for_record(bus.js, lost.scan_id, lambda r: bool(r.failures))

        await browse(chromium, profile, f"{url}/", f"--screenshot={shot}")
        index = await browse(chromium, profile, f"{url}/", "--dump-dom")
        detail = await browse(chromium, profile, f"{url}/scan/{done.scan_id}", "--dump-dom")
        letters = await browse(chromium, profile, f"{url}/deadletters", "--dump-dom")
        async with httpx.AsyncClient() as client:
            css = (await client.get(f"{url}/static/app.css")).text

        # Last, a scan whose path is markup: the page's script must show it as text, never make it an element.
        evil = announce(tmp_path / "source", "bl832", ['<img src=x onerror="document.title=1">.h5'])
        await bus.publish(evil)
        await wait_for_record(bus.js, evil.scan_id, lambda r: bool(r.failures))
        evil_detail = await browse(chromium, profile, f"{url}/scan/{evil.scan_id}", "--dump-dom")
        evil_index = await browse(chromium, profile, f"{url}/", "--dump-dom")

    if os.environ.get(SAVE_ENV):
        shutil.copyfile(shot, REPO / "docs" / "statuspage.png")

    went = {"detected", "copied", "catalogued", "pruned", "failed"}
    shown = pixels_of(shot, stage_colours(css))
    for stage in STAGES:
        if stage in went:
            assert shown[stage] >= MIN_PIXELS, f"the screenshot ({shot}) does not show {stage}: {shown}"
        else:
            assert shown[stage] == 0, f"the screenshot ({shot}) shows {stage}, which no scan reached: {shown}"

    # The DOM after the script ran: one row per scan, with exactly the stages it went through, in order.
    for stage in STAGES:
        assert f"<th>{stage}</th>" in index
    assert row_stages(index, done.scan_id) == ["detected", "copied", "catalogued", "pruned"]
    assert row_stages(index, lost.scan_id) == ["detected", "failed"]
    assert index.index(f'data-scan="{lost.scan_id}"') < index.index(f'data-scan="{done.scan_id}"')  # newest first

    pid = record.external_ids["catalog:raw"]
    assert f"xxh3-128:{digest}" in detail
    assert f'<a href="{scicat.url}/Datasets/{quote(pid, safe="")}"' in detail
    assert re.findall(r'data-stage="([a-z]+)"', detail) == ["detected", "copied", "catalogued", "pruned"]
    [letter] = re.findall(r'<tr data-seq="(\d+)">', letters)
    assert f'data-seq="{letter}">Replay</button>' in letters and lost.scan_id in letters

    for dom in (evil_detail, evil_index):
        assert "<img" not in dom and "&lt;img src=x" in dom


class DevTools:
    """Chromium driven over its DevTools pipe (``--remote-debugging-pipe``): it reads commands on fd 3 and writes
    answers on fd 4, each one JSON message ended by a NUL byte. A shell hands it our stdin and stdout as those."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._id = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, chromium: str, profile: Path) -> AsyncIterator[DevTools]:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            'exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null',
            chromium,
            *chromium_flags(profile),
            "--remote-debugging-pipe",
            "about:blank",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=2**24,
        )
        browser = cls(proc)
        try:
            yield browser
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(browser.send("Browser.close"), 5)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        """Send one command and return its result (events in between are skipped)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.proc.stdin.write(json.dumps(message).encode() + b"\0")
        await self.proc.stdin.drain()
        while True:
            answer = json.loads((await asyncio.wait_for(self.proc.stdout.readuntil(b"\0"), 30))[:-1])
            if answer.get("id") == self._id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    async def open(self, url: str) -> str:
        """A new tab on ``url``; the session to evaluate script in it."""
        target = await self.send("Target.createTarget", {"url": url})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        return str(attached["sessionId"])

    async def evaluate(self, session: str, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return result["result"].get("value")

    async def wait_for(self, session: str, expression: str, expected: Any, timeout: float = 15) -> None:
        """Until ``expression`` evaluates to ``expected`` in the page."""
        deadline = time.monotonic() + timeout
        while (value := await self.evaluate(session, expression)) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} is {value!r}, not {expected!r}, after {timeout} s")
            await asyncio.sleep(0.05)  # the page's script runs in the browser's process


async def test_an_open_page_shows_a_new_scan_and_its_stages_without_a_reload(
    tmp_path: Path, nats_server: EmbeddedNats, chromium: str
) -> None:
    config = test_config(tmp_path)
    write(tmp_path / "source/2026/fresh_0001.h5", os.urandom(50_000))
    async with (
        harness(config, nats_server.url, build_mover(config), build_ledger(config)) as (bus, _),
        status_page(config, nats_server.url, tmp_path) as url,
        DevTools.launch(chromium, tmp_path / "chromium-profile") as browser,
    ):
        tab = await browser.open(f"{url}/")
        await browser.wait_for(tab, "document.getElementById('live').textContent", "live")
        await browser.evaluate(tab, "window.openedOnce = true")  # gone if the page were reloaded
        scan = announce(tmp_path / "source", "bl832", ["2026/fresh_0001.h5"])
        await bus.publish(scan)
        stages = (
            f"[...document.querySelectorAll('tr[data-scan=\"{scan.scan_id}\"] [data-stage]')].map(e => e.dataset.stage)"
        )
        await browser.wait_for(tab, f"{stages}.join(' ')", "detected copied")
        activity = await browser.evaluate(tab, "document.getElementById('activity').textContent")
        still_open = await browser.evaluate(tab, "window.openedOnce === true")
    assert "scan.new.bl832" in activity and "scan.moved.bl832" in activity and scan.scan_id in activity
    assert still_open
