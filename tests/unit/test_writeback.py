"""Early write-back: present on Linux, and a file written through it is complete and durable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from beamflow.common import writeback
from beamflow.common.checksums import file_checksum
from beamflow.common.transfer_fs import copy_file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_sync_file_range_is_found_on_linux() -> None:
    assert writeback._sync_file_range is not None


def test_a_copy_spanning_many_windows_verifies(tmp_path: Path) -> None:
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    src_root.mkdir()
    payload = os.urandom(3 * writeback.WINDOW + 12345)  # several windows plus a ragged tail
    (src_root / "big.bin").write_bytes(payload)
    copy, written = copy_file(src_root, dst_root, "big.bin")
    assert written
    assert copy.size == len(payload)
    assert (dst_root / "big.bin").read_bytes() == payload
    assert copy.checksum == file_checksum(src_root / "big.bin")[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux-only")
def test_windows_start_only_after_a_full_window(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        tracker = writeback.EarlyWriteback(fd, window=100)
        os.write(fd, b"x" * 250)
        tracker.wrote(99)
        assert tracker._started == 0
        tracker.wrote(250)
        assert tracker._started == 250
    finally:
        os.close(fd)
