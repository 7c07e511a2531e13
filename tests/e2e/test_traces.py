"""One trace per scan: ``beamflow up`` with every service exporting over OTLP to a local receiver, one 8.3.2
scan written as the detector writes it, and the receiver finds a single trace holding a span from every
service that handled the scan, the copies' spans with their endpoint and bytes, and the catalog's HTTP calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
from beamflow.common.simulate import write_scan_832
from beamflow.common.trace_receiver import ReceivedSpan, TraceReceiver
from tests.e2e.test_cli import BEAMFLOW, REPO

#: Every service that handles an 8.3.2 scan in the demo configuration (the archiver looks and passes: its
#: archive runs on request).
HANDLERS = {"watcher", "mover", "ledger", "ingestor", "analyzer", "archiver"}


def roots(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    ids = {s.span_id for s in spans}
    return [s for s in spans if s.parent_span_id not in ids]


def scan_trace(receiver: TraceReceiver) -> list[ReceivedSpan] | None:
    """The trace every handler took part in, once every span's parent has arrived too (spans come in batches,
    a parent after its children when it ends last)."""
    for spans in receiver.store.traces().values():
        if {s.service for s in spans} >= HANDLERS and len(roots(spans)) == 1 and http_calls(spans):
            return spans
    return None


def http_calls(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    """The ingestor's HTTP calls to SciCat (the requests instrumentation's spans; old or new attribute names)."""
    return [
        s for s in spans if s.service == "ingestor" and ({"http.method", "http.request.method"} & set(s.attributes))
    ]


def test_a_scan_is_one_trace_with_a_span_from_every_service_that_handled_it(tmp_path: Path) -> None:
    with TraceReceiver() as receiver:
        env = {
            **os.environ,
            "BEAMFLOW_HOME": str(tmp_path),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s instead of 5 s
        }
        proc = subprocess.Popen([*BEAMFLOW, "up"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            lines = []
            for line in proc.stderr:
                lines.append(line)
                if "Ctrl-C stops" in line:
                    break
            assert any("beamflow is up" in line for line in lines), "".join(lines)
            write_scan_832(tmp_path / "demo/spot832", "2026/traced_0001", np.random.default_rng(3), atomic=True)
            deadline = time.monotonic() + 60
            while (spans := scan_trace(receiver)) is None and time.monotonic() < deadline:
                time.sleep(0.1)  # spans arrive from other processes, batched
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    seen = {s.service for t in receiver.store.traces().values() for s in t}
    assert spans is not None, f"no trace with every service; services seen: {sorted(seen)}"
    assert len({s.trace_id for s in spans}) == 1
    scan_ids = {s.attributes.get("beamflow.scan_id") for s in spans} - {None, ""}
    assert len(scan_ids) == 1, scan_ids
    copies = [s for s in spans if s.name.startswith("copy ")]
    assert {s.attributes["beamflow.endpoint"] for s in copies} == {"data832", "nersc832"}
    assert all(int(s.attributes["beamflow.bytes"]) > 0 for s in copies)
    assert http_calls(spans), "pyscicat's calls to SciCat are spans of the scan's trace"
    [root] = roots(spans)
    assert (root.service, root.name) == ("watcher", "watcher announce")
