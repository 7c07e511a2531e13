"""Each service's NATS user may publish only its own events: a real nats-server with the users the embedded
default generates, the real services connecting as their users, and the refusals seen on the wire."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from beamflow.common import subjects
from beamflow.common.bus import ensure_streams
from beamflow.common.bus_auth import OPERATOR, PASSWORD_ENV, USER_ENV, EmbeddedUsers
from beamflow.common.config import BeamflowConfig
from beamflow.common.events import ScanIngested, ScanMoved
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.observe import collecting
from beamflow.common.service import discover
from beamflow.common.testing import running, test_config
from beamflow.ledger.service import build as build_ledger
from beamflow.mover.service import build as build_mover
from nats.aio.client import Client
from tests.integration.test_mover import announce, write

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[BeamflowConfig, EmbeddedUsers, EmbeddedNats]]:
    config = test_config(tmp_path)
    users = EmbeddedUsers(config, {name: factory(config) for name, factory in discover().items()})
    conf = tmp_path / "auth.conf"
    conf.write_text(users.server_config())
    server = EmbeddedNats(tmp_path / "secured-nats", config_file=conf, probe_auth=users.operator())
    await server.start()
    try:
        operator = await nats.connect(server.url, **users.operator())
        await ensure_streams(operator.jetstream(), config)
        await operator.close()
        yield config, users, server
    finally:
        server.stop()


async def as_user(server: EmbeddedNats, users: EmbeddedUsers, name: str) -> Client:
    return await nats.connect(server.url, user=name, password=users.passwords[name], allow_reconnect=False)


async def test_a_service_publishes_its_own_events_but_not_anothers(
    secured: tuple[BeamflowConfig, EmbeddedUsers, EmbeddedNats],
) -> None:
    _, users, server = secured
    ingestor = await as_user(server, users, "ingestor")
    js = ingestor.jetstream(timeout=2)
    mine = ScanIngested(scan_id="bl832-1", beamline="bl832", catalog="scicat", pid="p/1", dataset_kind="raw")
    ack = await js.publish(mine.subject(), mine.to_json())
    assert ack.stream == subjects.SCANS_STREAM
    theirs = ScanMoved(
        scan_id="bl832-1",
        beamline="bl832",
        source_endpoint="source",
        destination_endpoint="data",
        step=1,
        files=[{"path": "a.h5", "size": 1, "checksum": "x", "algorithm": "xxh3-128"}],
        bytes=1,
        seconds=0.0,
        copied=True,
    )
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await js.publish(theirs.subject(), theirs.to_json())  # the server drops it: no ack comes
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.APIError)):
        await js.purge_stream(subjects.DEAD_LETTER_STREAM)  # destroying stored data is the operator's
    await ingestor.close()
    operator = await as_user(server, users, OPERATOR)
    info = await operator.jetstream().stream_info(subjects.SCANS_STREAM, subjects_filter="scan.>")
    await operator.close()
    assert set(info.state.subjects or {}) == {mine.subject()}, "only the ingestor's own event was stored"


async def test_no_credentials_no_connection(secured: tuple[BeamflowConfig, EmbeddedUsers, EmbeddedNats]) -> None:
    _, _, server = secured
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await nats.connect(
            server.url, user="mover", password="guessed", allow_reconnect=False, max_reconnect_attempts=0
        )


def test_the_generated_passwords_are_kept_and_the_owners_only(tmp_path: Path) -> None:
    config = test_config(tmp_path)
    services = {name: factory(config) for name, factory in discover().items()}
    first = EmbeddedUsers(config, services)
    assert (first.path.stat().st_mode & 0o777) == 0o600
    assert EmbeddedUsers(config, services).passwords == first.passwords, "a restart keeps every user's password"
    assert len(set(first.passwords.values())) == len(first.passwords) == len(services) + 1


async def test_services_run_end_to_end_as_their_own_users(
    tmp_path: Path,
    secured: tuple[BeamflowConfig, EmbeddedUsers, EmbeddedNats],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config, users, server = secured
    write(tmp_path / "source/S-1/scan.h5", os.urandom(5000))
    for name, value in users.env_for("mover").items():
        monkeypatch.setenv(name, value)
    async with running(build_mover(config), config, server.url):
        for name, value in users.env_for("ledger").items():
            monkeypatch.setenv(name, value)
        async with running(build_ledger(config), config, server.url):
            monkeypatch.setenv(USER_ENV, OPERATOR)
            monkeypatch.setenv(PASSWORD_ENV, users.passwords[OPERATOR])
            async with collecting(server.url, users.operator()) as events:
                operator = await as_user(server, users, OPERATOR)
                scan = announce(tmp_path / "source", "bl832", ["S-1/scan.h5"])
                await operator.jetstream().publish(scan.subject(), scan.to_json())
                await operator.close()
                await events.wait_for(lambda c: len(c.moved) >= 1, timeout=30)
    assert (tmp_path / "data/S-1/scan.h5").read_bytes() == (tmp_path / "source/S-1/scan.h5").read_bytes()
    assert not events.failed
