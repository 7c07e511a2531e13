"""The htar stand-in's pure rules: which member names fit a ustar header as htar splits them, and its command line."""

from __future__ import annotations

import pytest
from beamflow.sfapi_local.hpss import default_home, normalize
from beamflow.sfapi_local.hsi import split_commands, transfer_pairs
from beamflow.sfapi_local.htar import (
    DEFAULT_MAX_MEMBERS,
    Member,
    UsageError,
    fits_ustar,
    limit_from,
    link_fits_ustar,
    listing_line,
    parse_args,
    split_ustar_name,
)


@pytest.mark.parametrize("length", [1, 98, 99])
def test_a_name_of_at_most_99_bytes_needs_no_prefix(length: int) -> None:
    name = "n" * length
    assert split_ustar_name(name) == ("", name)


def test_a_name_of_100_bytes_without_a_slash_does_not_fit() -> None:
    assert split_ustar_name("n" * 100) is None


def test_a_long_path_is_split_at_a_slash_into_prefix_and_name() -> None:
    name = "a" * 100 + "/" + "b" * 99
    assert split_ustar_name(name) == ("a" * 100, "b" * 99)


def test_the_part_after_the_last_usable_slash_may_have_99_bytes_not_100() -> None:
    assert fits_ustar("d" * 60 + "/" + "f" * 99)
    assert not fits_ustar("d" * 60 + "/" + "f" * 100)


def test_the_prefix_may_have_154_bytes_not_155() -> None:
    assert split_ustar_name("p" * 154 + "/f") == ("p" * 154, "f")
    assert split_ustar_name("p" * 155 + "/f") is None


def test_the_split_uses_the_leftmost_slash_that_leaves_at_most_99_bytes() -> None:
    name = "x" * 50 + "/" + "y" * 50 + "/" + "z" * 48
    assert split_ustar_name(name) == ("x" * 50, "y" * 50 + "/" + "z" * 48)


def test_a_directory_keeps_its_trailing_slash_in_the_count() -> None:
    assert fits_ustar("d" * 98 + "/")
    assert not fits_ustar("d" * 99 + "/")
    assert fits_ustar("p" * 20 + "/" + "d" * 98 + "/")


def test_lengths_are_counted_in_utf8_bytes() -> None:
    assert fits_ustar("é" * 49)  # 98 bytes
    assert not fits_ustar("é" * 50)  # 100 bytes, no slash


def test_link_targets_may_have_99_bytes() -> None:
    assert link_fits_ustar("t" * 99)
    assert not link_fits_ustar("t" * 100)


def test_the_member_limit_defaults_to_a_million_and_reads_the_environment() -> None:
    assert limit_from({}, "LIMIT", DEFAULT_MAX_MEMBERS) == 1_000_000
    assert limit_from({"LIMIT": "2,500"}, "LIMIT", DEFAULT_MAX_MEMBERS) == 2500
    with pytest.raises(ValueError):
        limit_from({"LIMIT": "0"}, "LIMIT", DEFAULT_MAX_MEMBERS)


def test_the_command_line_groups_letters_and_takes_values_as_htar_does() -> None:
    options = parse_args(["-cvPf", "als/2024-1.tar", "-Hcrc:verify=1", "-M", "5", "scan1", "notes.txt"])
    assert (options.action, options.archive, options.files) == ("c", "als/2024-1.tar", ["scan1", "notes.txt"])
    assert options.verbose and options.create_dirs and options.crc
    assert options.verify == {"info", "crc"} and options.max_members == 5
    assert parse_args(["tf", "x.tar"]).action == "t"  # the first word may omit its dash
    assert parse_args(["-xf", "x.tar", "-Hverify=all", "a/b"]).verify == {"info", "crc", "compare"}


@pytest.mark.parametrize(
    "argv",
    [["-f", "x.tar"], ["-ctf", "x.tar", "a"], ["-c", "a"], ["-cf", "x.tar"], ["-cf", "x.tar", "-Hbogus", "a"]],
)
def test_command_lines_htar_refuses(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv)


def test_a_listing_line_has_the_real_layout() -> None:
    member = Member("nova/sn1987a", "file", 9331200, 0o700, 1285364640, 1000, 1000, "elvis", "elvis")
    line = listing_line(member)
    assert line.startswith("HTAR: -rwx------  elvis/elvis    9331200 ")
    assert line.endswith("  nova/sn1987a")


def test_hpss_paths_map_relative_to_the_home_and_never_climb_out() -> None:
    assert default_home("alsdev") == "/home/a/alsdev"
    assert normalize("als/x.tar", "/home/a/alsdev") == "/home/a/alsdev/als/x.tar"
    assert normalize("/home/a/alsdev/../../..", "/") == "/"


def test_hsi_command_lines_and_transfer_pairs() -> None:
    assert split_commands(["mkdir -p a/b; cput x : a/b/x"]) == [["mkdir", "-p", "a/b"], ["cput", "x", ":", "a/b/x"]]
    assert transfer_pairs(["x", ":", "a/b/x"]) == [("x", "a/b/x")]
    # Without the colon, two names are two transfers (HSI's rule), each paired with its last component.
    assert transfer_pairs(["local", "/home/a/alsdev/remote"]) == [
        ("local", "local"),
        ("remote", "/home/a/alsdev/remote"),
    ]
