"""Archive planning: cycles, names, parts, large files, immutability and htar's limits; pure logic."""

from __future__ import annotations

from datetime import datetime

import pytest
from beamflow.archiver.planning import (
    FACILITY_ZONE,
    ArchivePlanError,
    HtarLimits,
    bundle_name,
    cycle_of,
    fits_htar,
    members_missing,
    plan_archive,
)
from beamflow.common.archive_model import Cycle, ExistingBundle, MemberFile
from hypothesis import given, settings
from hypothesis import strategies as st

P = "ALS-11123"
JUNE = datetime(2026, 6, 1, 12, tzinfo=FACILITY_ZONE).timestamp()
AUGUST = datetime(2026, 8, 1, 12, tzinfo=FACILITY_ZONE).timestamp()


def f(path: str, size: int = 10, mtime: float = JUNE, scan: str | None = None) -> MemberFile:
    return MemberFile(path=path, size=size, mtime=mtime, scan_id=scan or path.rsplit("/", 1)[0])


def test_cycles_turn_at_midnight_on_july_16_facility_time() -> None:
    last = datetime(2026, 7, 15, 23, 59, 59, tzinfo=FACILITY_ZONE).timestamp()
    first = datetime(2026, 7, 16, 0, 0, tzinfo=FACILITY_ZONE).timestamp()
    assert (cycle_of(last).number, cycle_of(first).number) == (1, 2)
    assert cycle_of(datetime(2026, 12, 31, 23, 59, tzinfo=FACILITY_ZONE).timestamp()) == Cycle(year=2026, number=2)
    assert cycle_of(datetime(2027, 1, 1, 0, 0, tzinfo=FACILITY_ZONE).timestamp()) == Cycle(year=2027, number=1)
    # 20:00 on July 15 in Berkeley is already July 16 in UTC: still cycle 1.
    evening = datetime(2026, 7, 15, 20, 0, tzinfo=FACILITY_ZONE).timestamp()
    assert cycle_of(evening).number == 1


def test_a_proposals_files_become_one_bundle_per_cycle_named_by_cycle() -> None:
    plans = plan_archive("bl832", P, [f("a/1.h5"), f("a/2.h5"), f("b/1.h5", mtime=AUGUST)], [])
    assert [(p.directory, p.name, [m.path for m in p.members]) for p in plans] == [
        ("bl832/raw/ALS-11123", "ALS-11123_2026-1.tar", ["a/1.h5", "a/2.h5"]),
        ("bl832/raw/ALS-11123", "ALS-11123_2026-2.tar", ["b/1.h5"]),
    ]


def test_parts_split_at_the_size_limit_keeping_scans_whole() -> None:
    files = [f("s1/a", 40), f("s1/b", 40), f("s2/a", 40), f("s3/a", 30)]
    plans = plan_archive("bl832", P, files, [], part_size=100)
    assert [p.name for p in plans] == ["ALS-11123_2026-1.tar", "ALS-11123_2026-1_part2.tar"]
    assert [[m.path for m in p.members] for p in plans] == [["s1/a", "s1/b"], ["s2/a", "s3/a"]]
    assert all(p.size <= 100 for p in plans)


def test_a_scan_bigger_than_a_part_is_split_file_by_file() -> None:
    plans = plan_archive("bl832", P, [f("big/a", 60), f("big/b", 60)], [], part_size=100)
    assert [[m.path for m in p.members] for p in plans] == [["big/a"], ["big/b"]]


def test_large_files_go_alone_with_hsi_and_clashing_names_stay_distinct() -> None:
    files = [f("x/huge.h5", 500), f("y/huge.h5", 500), f("x/small.h5", 5)]
    plans = plan_archive("bl832", P, files, [], large_file=100)
    assert [(p.kind, p.name) for p in plans] == [
        ("hsi", "huge.h5"),
        ("hsi", "huge.h5.2"),
        ("htar", "ALS-11123_2026-1.tar"),
    ]


def test_bundles_are_immutable_new_scans_take_the_next_part() -> None:
    existing = [
        ExistingBundle(directory="bl832/raw/ALS-11123", name="ALS-11123_2026-1.tar", kind="htar", members=["a/1"]),
        ExistingBundle(
            directory="bl832/raw/ALS-11123", name="ALS-11123_2026-1_part3.tar", kind="htar", members=["b/1"]
        ),
    ]
    plans = plan_archive("bl832", P, [f("a/1"), f("b/1"), f("c/1")], existing)
    assert [(p.name, [m.path for m in p.members]) for p in plans] == [("ALS-11123_2026-1_part4.tar", ["c/1"])]
    assert plan_archive("bl832", P, [f("a/1"), f("b/1")], existing) == []


def test_htar_limits_name_every_offending_file_before_anything_is_planned() -> None:
    long_name = "d/" + "n" * 120
    deep = "/".join(["f" * 60] * 4) + "/x.h5"  # no '/' leaves a prefix <= 154 and a name <= 99
    assert fits_htar("p" * 150 + "/" + "n" * 99, HtarLimits()) and not fits_htar(long_name, HtarLimits())
    with pytest.raises(ArchivePlanError) as caught:
        plan_archive("bl832", P, [f(long_name), f(deep), f("ok/x.h5")], [])
    message = str(caught.value)
    assert long_name in message and deep in message and "ok/x.h5" not in message
    assert "Rename" in message


def test_the_member_count_limit_splits_parts() -> None:
    plans = plan_archive("bl832", P, [f(f"s{i}/a") for i in range(5)], [], limits=HtarLimits(members=2))
    assert [len(p.members) for p in plans] == [2, 2, 1]


def test_members_missing_from_a_listing() -> None:
    [plan] = plan_archive("bl832", P, [f("a/1"), f("a/2")], [])
    assert members_missing(plan, ["a/1"]) == ["a/2"] and members_missing(plan, ["a/1", "a/2"]) == []
    assert bundle_name(P, Cycle(year=2026, number=2), 2) == "ALS-11123_2026-2_part2.tar"


files_strategy = st.lists(
    st.builds(
        f,
        path=st.from_regex(r"[a-d]/[a-z]{1,6}\.h5", fullmatch=True),
        size=st.integers(0, 120),
        mtime=st.sampled_from([JUNE, AUGUST, JUNE + 400 * 86400]),
        scan=st.sampled_from(["s1", "s2", "s3", "s4"]),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(files=files_strategy, already=st.integers(0, 5))
def test_every_file_is_planned_once_within_limits_and_never_into_an_existing_name(
    files: list[MemberFile], already: int
) -> None:
    existing_plans = plan_archive("bl832", P, files[:already], [], part_size=100, large_file=110)
    existing = [
        ExistingBundle(directory=p.directory, name=p.name, kind=p.kind, members=[m.path for m in p.members])
        for p in existing_plans
    ]
    plans = plan_archive("bl832", P, files, existing, part_size=100, large_file=110)
    archived = {m for b in existing for m in b.members}
    planned = [m.path for p in plans for m in p.members]
    assert sorted(planned) == sorted({x.path for x in files} - archived)
    assert not {p.name for p in plans} & {b.name for b in existing}
    for plan in plans:
        assert plan.kind == "hsi" or plan.size <= 100 or len(plan.members) == 1
        assert all(cycle_of(m.mtime) == plan.cycle for m in plan.members)
