"""Archive planning: cycles, names, parts, large files, immutability, scans kept whole and htar's limits.

Pure logic: every test plans in memory (sizes are numbers, no file is written).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import pytest
from beamflow.archiver.planning import (
    FACILITY_ZONE,
    HTAR_MAX_MEMBER_BYTES,
    ArchivePlanError,
    HtarLimits,
    bundle_directory,
    bundle_name,
    cycle_bounds,
    cycle_of,
    fits_htar,
    members_missing,
    parse_cycle,
    part_of,
    plan_archive,
)
from beamflow.common.archive_config import GIB, TIB
from beamflow.common.archive_model import BundlePlan, Cycle, ExistingBundle, MemberFile
from beamflow.common.errors import PermanentError
from beamflow.sfapi_local.htar import fits_ustar
from hypothesis import given, settings
from hypothesis import strategies as st

BL = "bl832"
P = "ALS-11123"
DIR = "bl832/raw/ALS-11123"
C1 = Cycle(year=2026, number=1)
C2 = Cycle(year=2026, number=2)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """POSIX seconds of a wall-clock time at the facility."""
    return datetime(year, month, day, hour, minute, second, tzinfo=FACILITY_ZONE).timestamp()


JUNE = local(2026, 6, 1, 12)
AUGUST = local(2026, 8, 1, 12)


def f(path: str, size: int = 10, mtime: float = JUNE, scan: str | None = None) -> MemberFile:
    """A file; its scan defaults to its folder."""
    return MemberFile(path=path, size=size, mtime=mtime, scan_id=scan or path.rsplit("/", 1)[0])


def layout(plans: list[BundlePlan]) -> list[tuple[str, str, list[str]]]:
    return [(p.kind, p.name, [m.path for m in p.members]) for p in plans]


def as_existing(plans: list[BundlePlan]) -> list[ExistingBundle]:
    return [
        ExistingBundle(directory=p.directory, name=p.name, kind=p.kind, members=[m.path for m in p.members])
        for p in plans
    ]


def htar(name: str, *members: str) -> ExistingBundle:
    return ExistingBundle(directory=DIR, name=name, kind="htar", members=list(members))


# -- cycles ------------------------------------------------------------------------------------------------


def test_cycle_one_ends_with_july_15_and_cycle_two_starts_at_local_midnight() -> None:
    assert cycle_of(local(2026, 7, 15, 23, 59, 59)) == C1
    assert cycle_of(local(2026, 7, 15, 23, 59, 59) + 0.999) == C1
    assert cycle_of(local(2026, 7, 16, 0, 0)) == C2
    assert cycle_of(local(2026, 1, 1, 0, 0)) == C1


def test_the_year_turns_at_local_midnight_on_new_year() -> None:
    assert cycle_of(local(2026, 12, 31, 23, 59, 59)) == C2
    assert cycle_of(local(2027, 1, 1, 0, 0)) == Cycle(year=2027, number=1)


def test_the_facility_zone_decides_the_date_not_utc() -> None:
    # 05:00 UTC on July 16 is 22:00 on July 15 in Berkeley (PDT, UTC-7).
    instant = datetime(2026, 7, 16, 5, 0, tzinfo=UTC).timestamp()
    assert cycle_of(instant) == C1
    assert cycle_of(instant, zone=UTC) == C2
    # 03:00 UTC on New Year's day is still Dec 31 of the old year in Berkeley (PST, UTC-8).
    new_year = datetime(2027, 1, 1, 3, 0, tzinfo=UTC).timestamp()
    assert cycle_of(new_year) == C2
    assert cycle_of(new_year, zone=UTC) == Cycle(year=2027, number=1)
    # Further east it is already July 16 at 16:00 UTC on July 15.
    assert cycle_of(datetime(2026, 7, 15, 16, 0, tzinfo=UTC).timestamp(), zone=ZoneInfo("Asia/Tokyo")) == C2


def test_the_zone_changes_which_bundle_a_file_lands_in() -> None:
    instant = datetime(2026, 7, 16, 5, 0, tzinfo=UTC).timestamp()
    [berkeley] = plan_archive(BL, P, [f("a/1", mtime=instant)], [])
    [utc] = plan_archive(BL, P, [f("a/1", mtime=instant)], [], zone=UTC)
    assert (berkeley.name, utc.name) == ("ALS-11123_2026-1.tar", "ALS-11123_2026-2.tar")


def test_cycle_bounds_are_local_midnights_and_agree_with_cycle_of() -> None:
    start, end = cycle_bounds(C1)
    assert (start, end) == (datetime(2026, 1, 1, tzinfo=FACILITY_ZONE), datetime(2026, 7, 16, tzinfo=FACILITY_ZONE))
    assert cycle_bounds(C2) == (end, datetime(2027, 1, 1, tzinfo=FACILITY_ZONE))
    for cycle in (C1, C2):
        first, after = cycle_bounds(cycle)
        assert cycle_of(first.timestamp()) == cycle
        assert cycle_of(after.timestamp() - 0.001) == cycle
        assert cycle_of(after.timestamp()) != cycle
    assert cycle_bounds(C1, UTC)[1] - cycle_bounds(C1)[1] == timedelta(hours=-7)


def test_cycle_labels_parse_and_nonsense_is_refused() -> None:
    assert parse_cycle("2026-1") == C1 and parse_cycle(" 2026-2 ") == C2
    assert parse_cycle(C2.label) == C2
    for bad in ("2026-3", "2026", "26-1", "2026-1x", "cycle 1"):
        with pytest.raises(ValueError, match="YYYY-1"):
            parse_cycle(bad)


# -- names -------------------------------------------------------------------------------------------------


def test_bundle_names_follow_the_seed_first_unsuffixed_then_part1() -> None:
    assert bundle_directory(BL, P) == "bl832/raw/ALS-11123"
    assert bundle_name(P, C1) == bundle_name(P, C1, 1) == "ALS-11123_2026-1.tar"
    assert bundle_name(P, C2, 2) == "ALS-11123_2026-2_part1.tar"
    assert bundle_name(P, C2, 3) == "ALS-11123_2026-2_part2.tar"
    with pytest.raises(ValueError):
        bundle_name(P, C1, 0)


def test_part_of_reads_back_bundle_names_including_the_seeds() -> None:
    for part in (1, 2, 3, 12):
        assert part_of(P, C1, bundle_name(P, C1, part)) == part
    assert part_of(P, C1, "ALS-11123_2026-1_part0.tar") == 1  # as the seed's docstring names a first part
    for other in ("ALS-11123_2026-2.tar", "ALS-2_2026-1.tar", "ALS-11123_2026-1_partx.tar", "frame.h5"):
        assert part_of(P, C1, other) is None


# -- bundles and parts -------------------------------------------------------------------------------------


def test_a_proposals_files_become_one_bundle_per_cycle_in_its_folder() -> None:
    plans = plan_archive(BL, P, [f("b/1.h5", mtime=AUGUST), f("a/2.h5"), f("a/1.h5")], [])
    assert [(p.directory, p.cycle) for p in plans] == [(DIR, C1), (DIR, C2)]
    assert layout(plans) == [
        ("htar", "ALS-11123_2026-1.tar", ["a/1.h5", "a/2.h5"]),
        ("htar", "ALS-11123_2026-2.tar", ["b/1.h5"]),
    ]
    assert plans[0].path == "bl832/raw/ALS-11123/ALS-11123_2026-1.tar"


def test_parts_split_at_the_size_limit_and_a_full_part_is_allowed() -> None:
    exact = plan_archive(BL, P, [f("s1/a", 60), f("s2/a", 40)], [], part_size=100)
    assert layout(exact) == [("htar", "ALS-11123_2026-1.tar", ["s1/a", "s2/a"])]
    over = plan_archive(BL, P, [f("s1/a", 60), f("s2/a", 41)], [], part_size=100)
    assert layout(over) == [
        ("htar", "ALS-11123_2026-1.tar", ["s1/a"]),
        ("htar", "ALS-11123_2026-1_part1.tar", ["s2/a"]),
    ]


def test_the_default_part_size_is_the_seeds_two_tib() -> None:
    # 34 files of 60 GiB make 2040 GiB, under 2 TiB (2048 GiB); the 35th starts the next part.
    files = [f(f"s{i:02}/a", 60 * GIB) for i in range(35)]
    plans = plan_archive(BL, P, files, [])
    assert [(p.kind, len(p.members)) for p in plans] == [("htar", 34), ("htar", 1)]
    assert plans[0].size <= 2 * TIB < plans[0].size + 60 * GIB


def test_a_file_bigger_than_a_part_but_not_large_gets_a_part_of_its_own() -> None:
    files = [f("a/small", 10), f("b/big", 150), f("c/small", 10)]
    plans = plan_archive(BL, P, files, [], part_size=100, large_file=1000)
    assert layout(plans) == [
        ("htar", "ALS-11123_2026-1.tar", ["a/small"]),
        ("htar", "ALS-11123_2026-1_part1.tar", ["b/big"]),
        ("htar", "ALS-11123_2026-1_part2.tar", ["c/small"]),
    ]


def test_a_scan_is_not_split_when_it_fits_in_a_part() -> None:
    # File by file, s2/a would still fit beside s1 (90 bytes); the scan goes whole into the next part instead.
    files = [f("s1/a", 30), f("s1/b", 30), f("s2/a", 30), f("s2/b", 30), f("s3/a", 40)]
    plans = plan_archive(BL, P, files, [], part_size=100)
    assert [[m.path for m in p.members] for p in plans] == [["s1/a", "s1/b"], ["s2/a", "s2/b", "s3/a"]]


def test_a_scan_is_kept_whole_by_scan_id_even_across_folders() -> None:
    files = [f("x/a", 40, scan="S1"), f("y/b", 40, scan="S2"), f("z/c", 40, scan="S1")]
    plans = plan_archive(BL, P, files, [], part_size=100)
    assert [[m.path for m in p.members] for p in plans] == [["x/a", "z/c"], ["y/b"]]


def test_a_scan_too_big_for_a_part_starts_in_the_open_part_only_if_that_costs_no_extra_part() -> None:
    # 150 bytes in two files: two parts either way, so it fills the open part first.
    fills = plan_archive(BL, P, [f("a/x", 10), f("b/1", 75), f("b/2", 75)], [], part_size=100)
    assert [[m.path for m in p.members] for p in fills] == [["a/x", "b/1"], ["b/2"]]
    # 200 bytes in four files: starting beside a/x would spread it over three parts instead of two.
    fresh = plan_archive(BL, P, [f("a/x", 10), *(f(f"b/{i}", 50) for i in range(4)), f("c/y", 10)], [], part_size=100)
    assert [[m.path for m in p.members] for p in fresh] == [["a/x"], ["b/0", "b/1"], ["b/2", "b/3"], ["c/y"]]


def test_the_member_count_limit_splits_parts_and_keeps_scans_whole() -> None:
    files = [f("s1/a"), f("s1/b"), f("s2/a"), f("s3/a"), f("s3/b"), f("s3/c")]
    plans = plan_archive(BL, P, files, [], limits=HtarLimits(members=2))
    # s3 (3 files) cannot fit any part: split; beside s2/a it still takes two parts, so it starts there.
    assert [[m.path for m in p.members] for p in plans] == [["s1/a", "s1/b"], ["s2/a", "s3/a"], ["s3/b", "s3/c"]]
    assert all(len(p.members) <= 2 for p in plans)


# -- large files -------------------------------------------------------------------------------------------


def test_files_above_large_file_go_alone_with_hsi_under_their_own_name() -> None:
    files = [f("x/huge.h5", 101), f("x/edge.h5", 100), f("x/small.h5", 5, mtime=AUGUST)]
    plans = plan_archive(BL, P, files, [], large_file=100)
    assert layout(plans) == [
        ("htar", "ALS-11123_2026-1.tar", ["x/edge.h5"]),
        ("hsi", "huge.h5", ["x/huge.h5"]),
        ("htar", "ALS-11123_2026-2.tar", ["x/small.h5"]),
    ]
    assert plans[1].cycle == C1 and plans[1].directory == DIR


def test_the_seeds_65_gib_threshold_is_the_default() -> None:
    plans = plan_archive(BL, P, [f("a/over", 65 * GIB + 1), f("b/under", 60 * GIB)], [])
    assert [(p.kind, p.name) for p in plans] == [("htar", "ALS-11123_2026-1.tar"), ("hsi", "over")]


def test_a_file_over_htars_member_size_goes_alone_even_below_large_file() -> None:
    # 65 GiB is above htar's 8**12-1 bytes: a file between the two would make htar fail.
    assert HTAR_MAX_MEMBER_BYTES == 68_719_476_735 < 65 * GIB
    files = [f("a/fits", HTAR_MAX_MEMBER_BYTES), f("b/over", HTAR_MAX_MEMBER_BYTES + 1)]
    plans = plan_archive(BL, P, files, [])
    assert layout(plans) == [("htar", "ALS-11123_2026-1.tar", ["a/fits"]), ("hsi", "over", ["b/over"])]
    lowered = plan_archive(BL, P, [f("a/x", 50)], [], limits=HtarLimits(member_bytes=40))
    assert layout(lowered) == [("hsi", "x", ["a/x"])]


def test_large_files_with_one_base_name_get_distinct_names_in_path_order() -> None:
    files = [f("y/huge.h5", 500), f("x/huge.h5", 500), f("z/huge.h5", 500), f("x/small.h5", 5)]
    plans = plan_archive(BL, P, files, [], large_file=100)
    assert layout(plans) == [
        ("htar", "ALS-11123_2026-1.tar", ["x/small.h5"]),
        ("hsi", "huge.h5", ["x/huge.h5"]),
        ("hsi", "huge_2.h5", ["y/huge.h5"]),
        ("hsi", "huge_3.h5", ["z/huge.h5"]),
    ]
    # One already stored under the plain name: the next one takes the first free name.
    stored = ExistingBundle(directory=DIR, name="huge.h5", kind="hsi", members=["w/huge.h5"])
    again = plan_archive(BL, P, [f("w/huge.h5", 500), f("v/huge.h5", 500)], [stored], large_file=100)
    assert layout(again) == [("hsi", "huge_2.h5", ["v/huge.h5"])]


def test_a_large_file_never_takes_a_bundle_name_an_index_name_or_a_hidden_name() -> None:
    files = [f("a/ALS-11123_2026-2.tar", 500), f("b/data.tar.idx", 500), f("c/.hidden", 500)]
    plans = plan_archive(BL, P, files, [], large_file=100)
    assert [p.name for p in plans] == ["ALS-11123_2026-2_2.tar", "data.tar.idx_2", "_.hidden"]
    # ...nor a name whose index would land on an existing object.
    squat = htar("frame.h5.idx")
    assert [p.name for p in plan_archive(BL, P, [f("d/frame.h5", 500)], [squat], large_file=100)] == ["frame_2.h5"]


# -- immutability ------------------------------------------------------------------------------------------


def test_new_scans_of_an_archived_cycle_go_after_the_highest_existing_part() -> None:
    existing = [htar("ALS-11123_2026-1.tar", "a/1"), htar("ALS-11123_2026-1_part2.tar", "b/1")]
    plans = plan_archive(BL, P, [f("a/1"), f("b/1"), f("c/1"), f("d/1", mtime=AUGUST)], existing)
    assert layout(plans) == [
        ("htar", "ALS-11123_2026-1_part3.tar", ["c/1"]),  # never into the gap at _part1
        ("htar", "ALS-11123_2026-2.tar", ["d/1"]),  # another cycle starts at its own first part
    ]


def test_bundles_the_seed_wrote_are_continued_with_the_next_part() -> None:
    seed = [htar("ALS-11123_2026-1.tar", "a/1"), htar("ALS-11123_2026-1_part1.tar", "b/1")]
    assert [p.name for p in plan_archive(BL, P, [f("c/1")], seed)] == ["ALS-11123_2026-1_part2.tar"]
    only_part0 = [htar("ALS-11123_2026-1_part0.tar", "a/1")]
    assert [p.name for p in plan_archive(BL, P, [f("c/1")], only_part0)] == ["ALS-11123_2026-1_part1.tar"]


def test_files_already_archived_are_not_planned_again() -> None:
    existing = [
        htar("ALS-11123_2026-1.tar", "a/1", "a/2"),
        ExistingBundle(directory=DIR, name="big.h5", kind="hsi", members=["a/big.h5"]),
    ]
    files = [f("a/1"), f("a/2"), f("a/big.h5", 500), f("a/3")]
    plans = plan_archive(BL, P, files, existing, large_file=100)
    assert layout(plans) == [("htar", "ALS-11123_2026-1_part1.tar", ["a/3"])]
    assert plan_archive(BL, P, files[:3], existing, large_file=100) == []


def test_planning_again_after_writing_plans_nothing() -> None:
    files = [f(f"s{i}/{j}", 30, mtime=JUNE if i % 2 else AUGUST) for i in range(5) for j in range(2)]
    first = plan_archive(BL, P, files, [], part_size=100)
    assert plan_archive(BL, P, files, as_existing(first), part_size=100) == []


# -- htar's limits -----------------------------------------------------------------------------------------


def test_fits_htar_at_the_exact_boundaries() -> None:
    assert fits_htar("n" * 99) and not fits_htar("n" * 100)
    assert fits_htar("p" * 154 + "/" + "n" * 99)
    assert not fits_htar("p" * 155 + "/" + "n" * 99)
    assert not fits_htar("p" * 10 + "/" + "n" * 100)
    # The split may fall at any '/', the leftmost that leaves at most 99 bytes after it.
    assert fits_htar("a" * 100 + "/" + "b" * 50 + "/" + "c" * 48)
    assert fits_htar("é" * 49) and not fits_htar("é" * 50)  # UTF-8 bytes, not characters
    assert fits_htar("p" * 200 + "/" + "n" * 99, HtarLimits(prefix_bytes=200))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a" * 40, "b" * 99, "c" * 100, "d", "é" * 30]), min_size=1, max_size=6))
def test_fits_htar_agrees_with_the_htar_stand_in(components: list[str]) -> None:
    path = "/".join(components)
    assert fits_htar(path) == fits_ustar(path)


def test_limit_violations_name_every_offending_file_and_the_limit_before_anything_is_planned() -> None:
    long_name = "d/" + "n" * 120
    deep = "/".join(["f" * 60] * 4) + "/x.h5"  # 248 bytes: no '/' leaves <= 154 before and <= 99 after
    files = [f(long_name), f(deep), f("ok/x.h5"), f("big/" + "n" * 300, size=500)]
    with pytest.raises(ArchivePlanError) as caught:
        plan_archive(BL, P, files, [], large_file=100)
    message = str(caught.value)
    assert isinstance(caught.value, PermanentError)
    assert len(caught.value.problems) == 2
    assert f"{long_name} (scan d): its last component is 120 bytes; htar stores at most 99 bytes" in message
    assert f"{deep} (scan {deep.rsplit('/', 1)[0]}): the path is 248 bytes" in message
    assert "at most 154 bytes before a '/'" in message
    assert "ok/x.h5" not in message and "big/" not in message  # fine, or stored alone with hsi
    assert "rename the files or folders" in message and "raise HtarLimits.name_bytes/prefix_bytes" in message
    assert message.startswith("2 problem(s) prevent archiving into bl832/raw/ALS-11123; nothing was planned")


def test_an_already_archived_file_is_not_checked_again() -> None:
    long_name = "d/" + "n" * 120
    assert plan_archive(BL, P, [f(long_name)], [htar("old.tar", long_name)]) == []


def test_paths_that_are_not_canonical_and_conflicting_duplicates_are_reported_together() -> None:
    files = [
        f("/abs/x"),
        f("a/../x"),
        f("a//x"),
        f("a/./x"),
        f("dup/x", 10),
        f("dup/x", 11),
        f("same/x"),
        f("same/x"),
        f("d/" + "n" * 120),
    ]
    with pytest.raises(ArchivePlanError) as caught:
        plan_archive(BL, P, files, [])
    problems = caught.value.problems
    assert [p.split(" ", 1)[0].rstrip(":") for p in problems] == [
        "dup/x",
        "/abs/x",
        "a/../x",
        "a/./x",
        "a//x",
        "d/" + "n" * 120,
    ]
    message = str(caught.value)
    assert "given 2 times with different details" in message and "10 bytes" in message and "11 bytes" in message
    assert "it is absolute" in message and "correct the ledger records" in message and "without '.'" in message


def test_a_proposal_that_is_not_one_folder_name_is_refused() -> None:
    with pytest.raises(ArchivePlanError, match="proposal 'a/b' is not a single folder name"):
        plan_archive(BL, "a/b", [f("x/1")], [])


def test_bad_sizes_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        plan_archive(BL, P, [f("a/1")], [], part_size=0)


# -- verification and determinism --------------------------------------------------------------------------


def test_members_missing_from_a_listing() -> None:
    [plan] = plan_archive(BL, P, [f("a/2"), f("a/1"), f("a/3")], [])
    assert members_missing(plan, ["a/1"]) == ["a/2", "a/3"]
    assert members_missing(plan, ["a/3", "a/1", "a/2", "extra"]) == []
    assert members_missing(plan, iter([])) == ["a/1", "a/2", "a/3"]


def test_the_same_files_in_any_order_give_the_same_plans() -> None:
    files = [
        f(f"{folder}/{i}.h5", size, mtime)
        for folder, size, mtime in (("s1", 30, JUNE), ("s2", 45, AUGUST), ("s3", 400, JUNE), ("s4", 20, JUNE))
        for i in range(3)
    ]
    expected = plan_archive(BL, P, files, [], part_size=100, large_file=300)
    for seed in range(5):
        shuffled = files[:]
        random.Random(seed).shuffle(shuffled)
        assert plan_archive(BL, P, shuffled, [], part_size=100, large_file=300) == expected
    assert [(p.cycle.number, p.kind) for p in expected] == [(1, "htar")] * 2 + [(1, "hsi")] * 3 + [(2, "htar")] * 2


# -- properties --------------------------------------------------------------------------------------------

BOUNDARIES = [
    local(2025, 12, 31, 23, 59, 59),
    local(2026, 1, 1),
    local(2026, 7, 15, 23, 59, 59),
    local(2026, 7, 16),
    local(2026, 12, 31, 23, 59, 59),
    local(2027, 7, 15, 12),
]
EXTRA_NAMES = [
    "ALS-11123_2026-1.tar",
    "ALS-11123_2026-1_part4.tar",
    "ALS-11123_2026-2_part0.tar",
    "ALS-11123_2027-1_part1.tar",
    "a.h5",
    "b_2.h5",
    "c.h5.idx",
]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[MemberFile], list[ExistingBundle], int, int, HtarLimits]:
    paths = draw(st.lists(st.from_regex(r"[ab]/[ab]/[a-c]{1,2}\.h5", fullmatch=True), unique=True, max_size=30))
    mtimes = st.sampled_from(BOUNDARIES) | st.floats(local(2025, 6, 1), local(2027, 9, 1))
    files = [
        MemberFile(
            path=path,
            size=draw(st.integers(0, 130)),
            mtime=draw(mtimes),
            scan_id=draw(st.sampled_from(["s1", "s2", "s3", "s4", "s5"])),
        )
        for path in paths
    ]
    part_size = draw(st.integers(1, 150))
    large_file = draw(st.integers(1, 160))
    limits = HtarLimits(members=draw(st.integers(1, 6)), member_bytes=draw(st.integers(1, 160)))
    # Existing bundles: what an earlier run planned for some of the files, plus strays under plausible names.
    earlier = draw(st.lists(st.sampled_from(files), unique_by=lambda m: m.path)) if files else []
    existing = as_existing(plan_archive(BL, P, earlier, [], part_size=part_size, large_file=large_file, limits=limits))
    for name in draw(st.lists(st.sampled_from(EXTRA_NAMES), unique=True, max_size=3)):
        if name not in {b.name for b in existing}:
            members = draw(st.lists(st.sampled_from([*paths, "zz/elsewhere.h5"]), unique=True, max_size=3))
            existing.append(ExistingBundle(directory=DIR, name=name, kind="htar", members=members))
    return files, existing, part_size, large_file, limits


@settings(max_examples=250, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_every_file_is_planned_once_within_limits_and_never_into_an_existing_name(
    scenario: tuple[list[MemberFile], list[ExistingBundle], int, int, HtarLimits], rnd: random.Random
) -> None:
    files, existing, part_size, large_file, limits = scenario
    replan = partial(plan_archive, BL, P, part_size=part_size, large_file=large_file, limits=limits)
    plans = replan(files, existing)

    archived = {m for b in existing for m in b.members}
    planned = [m.path for p in plans for m in p.members]
    assert sorted(planned) == sorted({x.path for x in files} - archived), "each file once, or already archived"

    names = [p.name for p in plans]
    assert len(set(names)) == len(names)
    assert not set(names) & {b.name for b in existing}
    alone_above = min(large_file, limits.member_bytes)
    for plan in plans:
        assert plan.directory == DIR
        assert all(cycle_of(m.mtime) == plan.cycle for m in plan.members)
        assert not plan.name.startswith(".") and not plan.name.endswith(".idx") and "/" not in plan.name
        if plan.kind == "hsi":
            assert len(plan.members) == 1 and plan.members[0].size > alone_above
            continue
        assert plan.size <= part_size or len(plan.members) == 1
        assert len(plan.members) <= limits.members
        assert all(m.size <= alone_above for m in plan.members)
        highest = max((part_of(P, plan.cycle, b.name) or 0 for b in existing), default=0)
        assert (part_of(P, plan.cycle, plan.name) or 0) > highest

    # A scan whose htar files of a cycle fit in one part shares a single part.
    where: dict[tuple[str, Cycle], set[str]] = {}
    for plan in plans:
        if plan.kind == "htar":
            for m in plan.members:
                where.setdefault((m.scan_id, plan.cycle), set()).add(plan.name)
    for (scan, cycle), bundles in where.items():
        members = [m for p in plans if p.kind == "htar" and p.cycle == cycle for m in p.members if m.scan_id == scan]
        if sum(m.size for m in members) <= part_size and len(members) <= limits.members:
            assert len(bundles) == 1, (scan, cycle, bundles)

    shuffled = files[:]
    rnd.shuffle(shuffled)
    assert replan(shuffled, existing) == plans, "the order of the input does not matter"
    assert replan(files, existing + as_existing(plans)) == [], "once written, nothing is left to plan"
