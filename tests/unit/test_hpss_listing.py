"""Reading HPSS listings back: htar's and hsi's output as a listing job leaves it, and how the archiver
merges what the archive lists with what the ledger knows."""

from __future__ import annotations

from beamflow.archiver.handler import merge_bundles
from beamflow.common.archive_hpss import (
    parse_folder_entries,
    parse_folder_listing,
    parse_hsi_size,
    parse_htar_listing,
)
from beamflow.common.archive_model import ExistingBundle

HTAR_LISTING = """HTAR: -rw-r--r--  alsdev/als       3000 2026-11-29 09:12  ALS-1/a b.h5
HTAR: -rw-r--r--  alsdev/als       4000 2026-11-29 09:12  ALS-1/sub/c.h5
HTAR: -rw-------  alsdev/als        256 2026-11-29 09:12  /tmp/HTAR_CF_CHK_4242_1796000000
HTAR: Listing complete for /home/a/alsdev/x/ALS-1_2026-2.tar, 3 files 7256 bytes
HTAR: HTAR SUCCESSFUL
"""


def test_htar_listing_gives_members_and_sizes_without_its_consistency_file() -> None:
    entries = parse_htar_listing(HTAR_LISTING)
    assert [(e.name, e.size) for e in entries] == [("ALS-1/a b.h5", 3000), ("ALS-1/sub/c.h5", 4000)]


def test_hsi_long_listing_gives_the_size_or_none() -> None:
    line = "-rw-r--r--    1 alsdev    als             5000 Nov 29 09:12 /home/a/alsdev/x/frame.h5"
    assert parse_hsi_size(line) == 5000
    assert parse_hsi_size("*** hpss_Lstat: No such file or directory [-2: HPSS_ENOENT]") is None


def test_a_folder_listing_names_bundles_files_and_unreadable_bundles() -> None:
    text = "\n".join(
        [
            "BUNDLE ALS-1_2026-2.tar",
            HTAR_LISTING,
            "FILE frame.h5",
            "-rw-r--r--    1 alsdev    als             5000 Nov 29 09:12 /home/a/alsdev/x/frame.h5",
            "BUNDLE ALS-1_2026-2_part1.tar",
            "UNREADABLE ALS-1_2026-2_part1.tar",
        ]
    )
    entries = parse_folder_entries(text)
    assert entries["ALS-1_2026-2_part1.tar"] is None, "an unreadable bundle has no members to trust"
    assert [(e.name, e.size) for e in entries["frame.h5"] or []] == [("frame.h5", 5000)]
    bundles = parse_folder_listing("bl832/raw/ALS-1", text)
    assert [(b.name, b.kind, b.members) for b in bundles] == [
        ("ALS-1_2026-2.tar", "htar", ["ALS-1/a b.h5", "ALS-1/sub/c.h5"]),
        ("ALS-1_2026-2_part1.tar", "htar", []),
        ("frame.h5", "hsi", []),
    ]


def test_the_ledger_adds_members_the_listing_cannot_show_and_bundles_it_did_not_list() -> None:
    def bundle(name: str, members: list[str]) -> ExistingBundle:
        kind = "htar" if name.endswith(".tar") else "hsi"
        return ExistingBundle(directory="bl832/raw/ALS-1", name=name, kind=kind, members=members)

    listed = [bundle("ALS-1_2026-2.tar", ["a.h5"]), bundle("frame.h5", [])]
    known = [bundle("frame.h5", ["ALS-1/big/frame.h5"]), bundle("ALS-1_2026-1.tar", ["old.h5"])]
    merged = merge_bundles(listed, known)
    assert [(b.name, b.members) for b in merged] == [
        ("ALS-1_2026-1.tar", ["old.h5"]),
        ("ALS-1_2026-2.tar", ["a.h5"]),
        ("frame.h5", ["ALS-1/big/frame.h5"]),
    ]
