"""Property: whatever happens to a scan, its source is deleted only when the safety rule held.

Hypothesis draws random sequences of copy, corrupt, delete-at-destination, hold-extend, hold-release,
expiry and prune steps. Each step is done for real: files are copied with the mover's copy function and
folded into the ledger (the KV bucket on a real nats-server) as the ledger service does; holds are
published as the message schedules the mover places; prune hands the pruner's own handler the hold the
server would deliver. An independent model of the rule decides after every prune whether deleting was
allowed, and the test checks both ways: a deletion only when allowed, and no refusal when allowed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from beamflow.common import holds, subjects
from beamflow.common.bus import publish_event
from beamflow.common.config import BeamflowConfig
from beamflow.common.endpoints import RetentionRule
from beamflow.common.errors import PruneRefused, SourceMissing
from beamflow.common.events import RetentionHold, ScanMoved, ScanPruned, scan_id_for, utcnow
from beamflow.common.ledger import Ledger
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.service import Context, Service
from beamflow.common.testing import running, test_config
from beamflow.common.transfer_fs import copy_file
from beamflow.pruner.handler import Pruner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

STEPS = ("copy", "corrupt", "delete_copy", "extend", "release", "expire", "prune")
_examples = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    nats = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=0)
    asyncio.run(nats.start())
    yield nats
    nats.stop()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> BeamflowConfig:
    rule = RetentionRule(keep_for=timedelta(hours=1), check_endpoint="data")
    return test_config(tmp_path_factory.mktemp("endpoints"), retention={"source": rule})


@dataclass
class Model:
    """What the safety rule says, kept from the steps alone (never from beamflow's own answers)."""

    copied: bool = False  # the ledger records a verified copy at data
    copy_intact: bool = False  # the file at data is still that copy
    hold_placed: bool = False
    hold_due: bool = False  # the latest hold's time has come

    @property
    def prune_allowed(self) -> bool:
        return self.hold_placed and self.hold_due and self.copied and self.copy_intact


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=12))
def test_source_is_deleted_only_when_the_safety_rule_held(
    server: EmbeddedNats, config: BeamflowConfig, steps: list[str]
) -> None:
    asyncio.run(run_example(server.url, config, steps, next(_examples)))


async def run_example(url: str, config: BeamflowConfig, steps: list[str], n: int) -> None:
    source_root, data_root = config.filesystem_root("source"), config.filesystem_root("data")
    rel = f"ex{n}/scan.h5"
    (source_root / rel).parent.mkdir(parents=True, exist_ok=True)
    original = os.urandom(4096)
    (source_root / rel).write_bytes(original)
    scan_id = scan_id_for("bl832", "source", f"ex{n}/scan")
    rule = config.endpoints["source"].retention
    assert rule is not None
    model = Model()
    pruner = Pruner(config)
    async with running(Service("property-test"), config, url) as bus:
        ledger = await Ledger.open(bus.js)
        latest: RetentionHold | None = None
        for step in steps:
            source_there = (source_root / rel).exists()
            if step == "copy" and source_there:
                try:
                    copy, _ = copy_file(source_root, data_root, rel, "source", "data")
                except SourceMissing:
                    continue
                moved = ScanMoved(
                    scan_id=scan_id,
                    beamline="bl832",
                    source_endpoint="source",
                    destination_endpoint="data",
                    step=1,
                    files=[copy],
                    bytes=copy.size,
                    seconds=0.0,
                    copied=True,
                )
                await ledger.record(moved, moved.subject())
                # As the mover does: the default hold is placed once (a repeat is the same message id).
                hold = holds.new_hold(config, scan_id, "bl832", "source", rule, [copy])
                if await holds.is_needed(bus.js, hold):
                    await publish_event(bus.js, hold, url)
                if not model.hold_placed:
                    latest = hold
                    model.hold_placed, model.hold_due = True, False
                model.copied = model.copy_intact = True
            elif step == "corrupt" and (data_root / rel).exists():
                # Always differs from the original, so two corruptions never restore the copy.
                data = bytearray((data_root / rel).read_bytes())
                data[100] = original[100] ^ 0xFF
                (data_root / rel).write_bytes(bytes(data))
                model.copy_intact = False
            elif step == "delete_copy" and (data_root / rel).exists():
                (data_root / rel).unlink()
                model.copy_intact = False
            elif step == "extend" and latest is not None:
                latest = await holds.reschedule(bus.js, config, latest, utcnow() + timedelta(hours=2), "extended")
                model.hold_due = False
            elif step in ("release", "expire") and latest is not None:
                # Expiry is time passing (modelled as an extension whose time has come); release is an
                # operator ending the hold. Both make the hold due now.
                due = utcnow() - timedelta(seconds=2)
                action = "released" if step == "release" else "extended"
                latest = await holds.reschedule(bus.js, config, latest, due, action)
                await fired(bus.js, latest)
                model.hold_due = True
            elif step == "prune" and latest is not None:
                delivered = await delivered_hold(bus.js, latest)
                allowed = model.prune_allowed
                ctx = Context(
                    bus, (ScanPruned,), delivered.expiry_subject(), 1, logging.LoggerAdapter(logging.getLogger())
                )
                refused: str | None = None
                try:
                    await pruner.on_hold_expired(ctx, delivered)
                except PruneRefused as exc:
                    refused = str(exc)
                gone = not (source_root / rel).exists()
                if source_there and gone:
                    assert allowed, f"unsafe deletion after {steps}: model {model}"
                if source_there and allowed:
                    assert gone, f"safe prune not done after {steps}: refused with {refused!r}"
                if not allowed:
                    assert not gone or not source_there


async def fired(js: JetStreamContext, hold: RetentionHold) -> None:
    """Wait until the server has fired ``hold``'s schedule (a due schedule fires within milliseconds)."""
    deadline = asyncio.get_running_loop().time() + 10
    while await holds.pending(js, hold) is not None:
        assert asyncio.get_running_loop().time() < deadline, "the server never fired a due hold"
        await asyncio.sleep(0.005)


async def delivered_hold(js: JetStreamContext, latest: RetentionHold) -> RetentionHold:
    """The hold the pruner would be handed now: the last one the server fired (possibly stale, when the
    hold was placed again or extended since), else the pending one, delivered early."""
    try:
        msg = await js.get_last_msg(subjects.HOLDS_STREAM, latest.expiry_subject())
    except NotFoundError:
        return latest
    return RetentionHold.model_validate_json(msg.data)
