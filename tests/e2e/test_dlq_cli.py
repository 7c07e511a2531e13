"""``beamflow dlq`` as an operator runs it: a separate process reading the dead letters the mover wrote."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from beamflow.common import deadletters
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.testing import config_to_yaml, harness, test_config
from beamflow.mover.service import build as build_mover
from tests.integration.test_mover import announce, write

BEAMFLOW = [sys.executable, "-m", "beamflow.common.cli"]


async def beamflow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in a thread, so the services in this process keep working meanwhile."""
    return await asyncio.to_thread(
        subprocess.run,
        [*BEAMFLOW, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )


async def test_list_show_and_purge_only_with_yes(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    config = test_config(tmp_path)
    config_file = config_to_yaml(config, tmp_path / "config.yaml")
    common = ("--nats", nats_server.url, "-c", str(config_file))
    write(tmp_path / "source/a.h5", b"a")
    async with harness(config, nats_server.url, build_mover(config)) as (bus, events):
        scan = announce(tmp_path / "source", "bl999", ["a.h5"])
        await bus.publish(scan)
        await events.wait_for(lambda c: len(c.failed) == 1)

        listed = await beamflow("dlq", "list", *common)
        filtered = await beamflow("dlq", "list", "--beamline", "bl832", *common)
        (letter,) = await deadletters.read(bus.js)
        shown = await beamflow("dlq", "show", str(letter.seq), *common)
        preview = await beamflow("dlq", "purge", "--all", "--beamline", "bl999", *common)
        after_preview = await deadletters.read(bus.js)
        purged = await beamflow("dlq", "purge", str(letter.seq), "--yes", *common)
        after_purge = await deadletters.read(bus.js)

    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if scan.scan_id in line)
    assert re.search(rf"^\W*{letter.seq}\W.*bl999\W+new\W+mover\W+UnknownBeamline\W+{scan.scan_id}", row), row
    assert "1 dead letter(s)" in listed.stdout
    assert filtered.returncode == 0 and scan.scan_id not in filtered.stdout and "0 dead letter(s)" in filtered.stdout

    assert shown.returncode == 0, shown.stderr
    assert "scan.new.bl999" in shown.stdout and "bl999" in shown.stdout
    assert letter.event.reason.split()[0] in shown.stdout
    assert '"scan_path": "a"' in shown.stdout  # the original data, as pretty JSON
    assert "Nats-Msg-Id" in shown.stdout

    assert preview.returncode == 1
    assert scan.scan_id in preview.stdout and "add --yes" in preview.stderr
    assert [x.seq for x in after_preview] == [letter.seq]
    assert purged.returncode == 0, purged.stderr
    assert f"purged 1 dead letter(s): {letter.seq}" in purged.stdout
    assert after_purge == []


async def test_wrong_selections_and_an_unreachable_server_are_told_plainly(tmp_path: Path) -> None:
    config_file = config_to_yaml(test_config(tmp_path), tmp_path / "config.yaml")
    nowhere = ("--nats", "nats://127.0.0.1:1", "-c", str(config_file))
    neither = await beamflow("dlq", "replay", *nowhere)
    both = await beamflow("dlq", "purge", "3", "--all", *nowhere)
    started = time.monotonic()
    down = await beamflow("dlq", "list", *nowhere)
    assert neither.returncode == 2 and "--all" in neither.stderr
    assert both.returncode == 2 and "not both" in both.stderr
    assert down.returncode == 1 and "cannot reach NATS at nats://127.0.0.1:1" in down.stderr
    assert time.monotonic() - started < 15
