"""Ingest benchmark: datasets created per second in the local SciCat, each with its origdatablock and thumbnail.

What it measures
    1. The ingestor end to end: N scan.moved events for 8.3.2 scans already on disk, handled by one
       ``ingestor`` process (``beamflow run ingestor``, production delivery settings) against the local
       SciCat run as ``beamflow up`` runs it (``python -m beamflow.scicat_local``, SQLite on disk). Each scan
       is read (HDF5 metadata, first projection), turned into a raw dataset, an origdatablock listing its
       file with checksum, and a PNG thumbnail attachment; ``scan.ingested`` is published. Figure: datasets
       per second, first to last ``scan.ingested`` (server timestamps), and per scan the median time from
       ``scan.moved`` stored to ``scan.ingested`` stored.
    2. The SciCat side alone: the same create-datablock-attachment step (``upsert_raw``, as the ingestor
       calls it) in one thread for M scans with a ready thumbnail, against the same server: what the
       catalog sustains without extraction.

How
    Scans are written with the detector simulator (``beamflow.common.simulate.write_scan_832``, the files
    the demo writes; 8 projections of 64x64 by default, ``--shape`` to change). NATS is the embedded
    server; the ledger service does not run (the ingestor reads only export-control flags from it).

Run: ``.venv/bin/python bench/ingest.py`` (or ``make bench-ingest``); ``--scans 50`` for a quick run.
Figures go to stdout and to ``bench/results/ingest.json``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import numpy as np
from beamflow.common import subjects
from beamflow.common.bus import ensure_streams
from beamflow.common.catalog_config import BeamlineCatalog, CatalogConnection, CatalogDefaults
from beamflow.common.checksums import file_checksum
from beamflow.common.endpoints import FilesystemEndpoint
from beamflow.common.events import FileCopy, ScanMoved, scan_id_for
from beamflow.common.natsserver import EmbeddedNats
from beamflow.common.secrets import SecretRef
from beamflow.common.simulate import write_scan_832
from beamflow.common.testing import config_to_yaml, test_config
from beamflow.ingestor import datasets
from beamflow.ingestor.catalog import Catalog
from beamflow.ingestor.extractors import Extracted, data_uri, thumbnail_png
from beamflow.ingestor.handler import upsert_raw
from beamflow.scicat_local.testing import start_process
from nats.js.api import DeliverPolicy

import harness

PASSWORD_ENV = "BEAMFLOW_BENCH_SCICAT_PASSWORD"


def write_scans(root: Path, count: int, shape: tuple[int, int]) -> list[ScanMoved]:
    rng = np.random.default_rng(832)
    events = []
    for i in range(count):
        path = write_scan_832(root, f"bench/tomo_{i:05d}", rng, projections=8, shape=shape)
        digest, size = file_checksum(path)
        rel = f"bench/tomo_{i:05d}.h5"
        events.append(
            ScanMoved(
                scan_id=scan_id_for("bl832", "source", rel[:-3]),
                beamline="bl832",
                source_endpoint="source",
                destination_endpoint="data",
                step=1,
                files=[FileCopy(path=rel, size=size, checksum=digest, algorithm="xxh3-128")],
                bytes=size,
                seconds=0.0,
                copied=True,
                scan_path=rel[:-3],
            )
        )
    return events


async def end_to_end(base: Path, args: Any, events: list[ScanMoved], url: str, password: str) -> dict[str, Any]:
    config = test_config(
        base,
        catalog=BeamlineCatalog(
            destination="data",
            technique="tomography-832",
            creation_location="/ALS/8.3.2",
            defaults=CatalogDefaults(
                owner_group="staff", contact_email="staff@example.org", principal_investigator="Staff"
            ),
        ),
        catalog_connection=CatalogConnection(url=url, username="ingestor", password=SecretRef(env=PASSWORD_ENV)),
    )
    config = config.model_copy(update={"delivery": config.delivery.model_copy(update={"concurrency": 16})})
    yaml_path = config_to_yaml(config, base / "beamflow.yaml")
    server = EmbeddedNats(base / "nats", port=0)
    await server.start()
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, config)
        env = {**os.environ, PASSWORD_ENV: password}
        command = [sys.executable, "-m", "beamflow.common.cli", "run", "ingestor", "--config", str(yaml_path)]
        with (base / "ingestor.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command, "--nats", server.url, env=env, stdout=log, stderr=log, start_new_session=True
            )
        # Publish only once the ingestor is pulling, so its start-up is not counted as latency.
        while True:
            try:
                info = await js.consumer_info(subjects.SCANS_STREAM, "ingestor-scan-moved")
                if info.num_waiting:
                    break
            except nats.js.errors.NotFoundError:
                pass
            if process.returncode is not None:
                raise SystemExit(f"the ingestor exited; see {base / 'ingestor.log'}")
            await asyncio.sleep(0.05)  # polling another process's readiness
        done: dict[str, float] = {}
        finished = asyncio.Event()

        async def on_ingested(msg: Any) -> None:
            done[msg.subject + str(msg.metadata.sequence.stream)] = msg.metadata.timestamp.timestamp()
            if len(done) >= len(events):
                finished.set()

        await js.subscribe(
            subjects.stage_filter(subjects.INGESTED),
            ordered_consumer=True,
            cb=on_ingested,
            deliver_policy=DeliverPolicy.NEW,
        )
        sent: list[float] = []
        for event in events:
            ack = await js.publish(event.subject(), event.to_json(), headers={"Nats-Msg-Id": event.msg_id()})
            sent.append((await js.get_msg(subjects.SCANS_STREAM, ack.seq)).time.timestamp())  # type: ignore[union-attr]
        try:
            await asyncio.wait_for(finished.wait(), args.timeout)
        finally:
            process.terminate()
            await process.wait()
        stamps = sorted(done.values())
        span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
        latency = [s - t for s, t in zip(stamps, sorted(sent), strict=False)]
        return {
            "datasets": len(stamps),
            "datasets_per_s": (len(stamps) - 1) / span if span > 0 else float("nan"),
            "moved_to_ingested_median_ms": statistics.median(latency) * 1000,
        }
    finally:
        await nc.close()
        server.stop()


def catalog_only(url: str, password: str, count: int) -> dict[str, Any]:
    catalog = Catalog(url, "ingestor", password, 30)
    settings = BeamlineCatalog(
        destination="data",
        technique="tomography-832",
        creation_location="/ALS/8.3.2",
        defaults=CatalogDefaults(owner_group="staff", contact_email="staff@example.org", principal_investigator="S"),
    )
    thumbnail = data_uri(thumbnail_png(np.random.default_rng(1).integers(0, 4000, (256, 256), dtype=np.uint16)))
    endpoint = FilesystemEndpoint(root=Path("/data"))
    started = time.perf_counter()
    for i in range(count):
        scan_id = f"bench-catalog-{i:06d}"
        event = ScanMoved(
            scan_id=scan_id,
            beamline="bl832",
            source_endpoint="source",
            destination_endpoint="data",
            step=1,
            files=[FileCopy(path=f"c/{i}.h5", size=1000, checksum="0" * 32, algorithm="xxh3-128")],
            bytes=1000,
            seconds=0.0,
            copied=True,
        )
        extracted = Extracted(dataset_name=scan_id, description="bench", principal_investigator="PI", proposal="P")
        who = datasets.owners(extracted, settings)
        raw = datasets.raw_dataset(event, extracted, who, settings, endpoint)
        block = datasets.origdatablock(event.files, {}, endpoint, datetime.now(UTC))
        catalog.session(lambda c: upsert_raw(c, scan_id, raw, block, thumbnail, who))  # noqa: B023
    elapsed = time.perf_counter() - started
    return {"datasets": count, "datasets_per_s": count / elapsed, "ms_per_dataset": elapsed / count * 1000}


async def main() -> int:
    parser = harness.parser("ingest", __doc__ or "", "Figures: datasets/s end to end and for SciCat alone.")
    parser.add_argument("--scans", type=int, default=300, help="scans through the ingestor (default 300)")
    parser.add_argument("--catalog-scans", type=int, default=500, help="datasets for the SciCat-only part")
    parser.add_argument("--shape", type=int, nargs=2, default=(64, 64), help="projection rows cols (default 64 64)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    with harness.scratch("ingest") as base:
        users = base / "users.json"
        password = os.urandom(12).hex()
        users.write_text(f'{{"ingestor": "{password}"}}')
        scicat = start_process(base / "scicat.sqlite", 0, users_file=users)
        try:
            print(f"local SciCat at {scicat.url}; writing {args.scans} 8.3.2 scans {tuple(args.shape)} ...")
            events = write_scans(base / "data", args.scans, tuple(args.shape))
            flow = await end_to_end(base, args, events, scicat.url, password)
            print(f"end to end: {flow}")
            alone = await asyncio.to_thread(catalog_only, scicat.url, password, args.catalog_scans)
            print(f"SciCat alone: {alone}")
        finally:
            scicat.stop()
    results = {"end_to_end": flow, "catalog_only": alone, "scans": args.scans, "shape": list(args.shape)}
    harness.save(results, args.output)
    print()
    print(
        f"ingestor end to end: {flow['datasets_per_s']:.1f} datasets/s over {flow['datasets']} scans "
        f"(with origdatablock and thumbnail); moved -> ingested median "
        f"{flow['moved_to_ingested_median_ms']:.0f} ms with all {flow['datasets']} published at once"
    )
    print(
        f"local SciCat alone: {alone['datasets_per_s']:.1f} datasets/s "
        f"({alone['ms_per_dataset']:.1f} ms per dataset + datablock + thumbnail, one client)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
