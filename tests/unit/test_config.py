"""The configuration file: loading, variables, path anchoring, cross-checks and environment checks."""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from beamflow.common.config import (
    BeamflowConfig,
    ExportControl,
    cross_check,
    environment_problems,
    load_config,
    parse_config,
)
from beamflow.common.endpoints import FilesystemEndpoint, GlobusEndpoint
from beamflow.common.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "config"

GLOBUS = {
    "kind": "globus",
    "collection_id": "00000000-0000-0000-0000-000000000001",
    "root": "/global/cfs/cdirs/test",
    "client_id": {"env": "TEST_GLOBUS_ID"},
    "client_secret": {"env": "TEST_GLOBUS_SECRET"},
    "leaves_facility": True,
}


def _base() -> dict[str, Any]:
    """A small valid configuration: one beamline watching ``src`` and copying to ``a`` then ``b``."""
    return {
        "endpoints": {
            "src": {"kind": "filesystem", "root": "/data/src"},
            "a": {
                "kind": "filesystem",
                "root": "/data/a",
                "globus": {"collection_id": "00000000-0000-0000-0000-00000000000a", "path": "/a"},
            },
            "b": {"kind": "filesystem", "root": "/data/b"},
            "remote": copy.deepcopy(GLOBUS),
        },
        "beamlines": {
            "bl": {
                "watch": {"endpoint": "src"},
                "scan": {"suffixes": [".h5"]},
                "destinations": [{"endpoint": "a"}, {"endpoint": "b", "source": "a"}],
            }
        },
    }


def _write(folder: Path, raw: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "beamflow.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def _problems(raw: dict[str, Any], base: Path = Path("/")) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, base)
    return caught.value.problems


@pytest.fixture
def no_beamflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BEAMFLOW"):
            monkeypatch.delenv(name)


# --- the shipped configurations -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo.yaml", "bl733.yaml", "bl832.yaml"])
def test_shipped_configs_load_without_any_environment(name: str, no_beamflow_env: None) -> None:
    config = load_config(CONFIG_DIR / name)
    assert config.beamlines
    assert cross_check(config) == []
    for endpoint in config.endpoints.values():
        if isinstance(endpoint, FilesystemEndpoint):
            assert endpoint.root.is_absolute()


def test_bl733_shape(no_beamflow_env: None) -> None:
    config = load_config(CONFIG_DIR / "bl733.yaml")
    bl = config.beamlines["bl733"]
    assert bl.watch.endpoint == "data733"
    assert isinstance(config.endpoints["data733"], FilesystemEndpoint)
    assert bl.scan.suffixes == [".txt", ".edf"]
    kinds = {d.endpoint: config.endpoints[d.endpoint].kind for d in bl.destinations}
    assert sorted(kinds.values()) == ["filesystem", "globus"]
    nersc = next(config.endpoints[n] for n, k in kinds.items() if k == "globus")
    assert isinstance(nersc, GlobusEndpoint)
    assert nersc.leaves_facility
    assert nersc.root.startswith("/global/cfs/")
    assert isinstance(nersc.collection_id, UUID)
    assert nersc.client_id.env == "BEAMFLOW_GLOBUS_CLIENT_ID"
    assert nersc.client_secret.env == "BEAMFLOW_GLOBUS_CLIENT_SECRET"


def test_bl832_shape(no_beamflow_env: None) -> None:
    config = load_config(CONFIG_DIR / "bl832.yaml")
    bl = config.beamlines["bl832"]
    assert bl.watch.endpoint == "spot832"
    assert bl.watch.mode == "inotify"
    assert bl.scan.suffixes == [".h5"]
    first, second = bl.destinations
    assert first.endpoint == "data832" and first.source is None
    assert second.source == "data832"
    nersc = config.endpoints[second.endpoint]
    assert isinstance(nersc, GlobusEndpoint) and nersc.leaves_facility
    assert not config.endpoints["data832"].leaves_facility
    assert bl.export_control.matches("restricted/sample_001")
    assert bl.export_control.matches("proposal7/export_controlled/sample_001")
    assert not bl.export_control.matches("proposal7/sample_001")


@pytest.mark.parametrize("name", ["bl733.yaml", "bl832.yaml"])
def test_example_configs_hold_no_secret_values(name: str) -> None:
    raw = yaml.safe_load((CONFIG_DIR / name).read_text())
    for endpoint in raw["endpoints"].values():
        for field in ("client_id", "client_secret"):
            if field in endpoint:
                assert set(endpoint[field]) <= {"env", "file_env"}


def test_demo_paths_anchor_at_the_config_folder_whatever_the_cwd(
    no_beamflow_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(Path(os.path.relpath(CONFIG_DIR / "demo.yaml", tmp_path)))
    assert config.filesystem_root("data733") == (REPO / ".beamflow/demo/data733").resolve()
    assert config.state_dir == (REPO / ".beamflow/state").resolve()


def test_demo_paths_follow_beamflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEAMFLOW_HOME", str(tmp_path / "home"))
    config = load_config(CONFIG_DIR / "demo.yaml")
    assert config.filesystem_root("spot832") == tmp_path / "home/demo/spot832"
    assert config.nats.data_dir == tmp_path / "home/nats"


# --- variables and relative paths -----------------------------------------------------------------------


def test_variable_with_default_uses_the_environment_when_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _base()
    raw["endpoints"]["src"]["root"] = "${TEST_BF_ROOT:-fallback}/src"
    monkeypatch.setenv("TEST_BF_ROOT", str(tmp_path / "from-env"))
    config = load_config(_write(tmp_path / "cfg", raw))
    assert config.filesystem_root("src") == tmp_path / "from-env/src"


def test_variable_default_applies_when_unset_and_is_anchored_at_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _base()
    raw["endpoints"]["src"]["root"] = "${TEST_BF_ROOT:-fallback}/src"
    raw["state_dir"] = "state"
    raw["nats"] = {"data_dir": "../nats-store"}
    monkeypatch.delenv("TEST_BF_ROOT", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(_write(tmp_path / "cfg", raw))
    assert config.filesystem_root("src") == tmp_path / "cfg/fallback/src"
    assert config.state_dir == tmp_path / "cfg/state"
    assert config.nats.data_dir == tmp_path / "nats-store"
    assert config.filesystem_root("a") == Path("/data/a")


def test_variable_without_default_uses_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _base()
    raw["state_dir"] = "${TEST_BF_STATE}/spool"
    monkeypatch.setenv("TEST_BF_STATE", "relative")
    config = load_config(_write(tmp_path, raw))
    assert config.state_dir == tmp_path / "relative/spool"


def test_missing_variable_without_default_is_a_config_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _base()
    raw["endpoints"]["a"]["root"] = "${TEST_BF_NOT_SET}/a"
    monkeypatch.delenv("TEST_BF_NOT_SET", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, raw))
    assert len(caught.value.problems) == 1
    assert "TEST_BF_NOT_SET" in caught.value.problems[0]
    assert "TEST_BF_NOT_SET" in str(caught.value)


def test_unreadable_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "beamlines: [unclosed\n"))


def test_an_empty_file_is_the_default_configuration(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config.beamlines == {} and config.endpoints == {}
    assert config.state_dir == tmp_path / ".beamflow/state"


def test_durations_are_parsed_from_the_file(tmp_path: Path) -> None:
    raw = _base()
    raw["delivery"] = {"ack_wait": "1500ms", "backoff": ["1s", "5m", 7]}
    config = load_config(_write(tmp_path, raw))
    assert config.delivery.ack_wait == timedelta(milliseconds=1500)
    assert config.delivery.backoff == [timedelta(seconds=1), timedelta(minutes=5), timedelta(seconds=7)]


@pytest.mark.parametrize("value", ["soon", -5, float("inf"), "99999999999d"])
def test_a_bad_duration_is_a_config_error_naming_the_field(value: object) -> None:
    raw = _base()
    raw["delivery"] = {"ack_wait": value}
    problems = _problems(raw)
    assert [p for p in problems if p.startswith("delivery.ack_wait:")], problems


# --- cross checks ---------------------------------------------------------------------------------------


def test_the_base_config_is_valid() -> None:
    config = parse_config(_base(), Path("/"))
    assert cross_check(config) == []
    assert config.beamlines["bl"].destinations[1].source == "a"


def _mutate_unknown_watch(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["watch"]["endpoint"] = "nowhere"


def _mutate_unknown_destination(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"][1]["endpoint"] = "nowhere"


def _mutate_unknown_source(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"][1]["source"] = "nowhere"


def _mutate_later_source(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"] = [{"endpoint": "a", "source": "b"}, {"endpoint": "b"}]


def _mutate_source_is_destination(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"] = [{"endpoint": "a"}, {"endpoint": "a", "source": "a"}]


def _mutate_copy_to_the_watched_endpoint(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"] = [{"endpoint": "src"}]


def _mutate_duplicate_destination(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"] = [{"endpoint": "a"}, {"endpoint": "a"}]


def _mutate_dotted_beamline(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl.733"] = raw["beamlines"].pop("bl")


def _mutate_dotted_endpoint(raw: dict[str, Any]) -> None:
    raw["endpoints"]["data.733"] = raw["endpoints"].pop("b")
    raw["beamlines"]["bl"]["destinations"][1]["endpoint"] = "data.733"


def _mutate_watch_globus(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["watch"]["endpoint"] = "remote"


def _mutate_globus_from_a_folder_without_a_collection(raw: dict[str, Any]) -> None:
    raw["beamlines"]["bl"]["destinations"].append({"endpoint": "remote", "source": "b"})


@pytest.mark.parametrize(
    ("mutate", "field", "says"),
    [
        (_mutate_unknown_watch, "beamlines.bl.watch.endpoint", "'nowhere'"),
        (_mutate_unknown_destination, "beamlines.bl.destinations.1.endpoint", "'nowhere'"),
        (_mutate_unknown_source, "beamlines.bl.destinations.1.source", "'nowhere'"),
        (_mutate_later_source, "beamlines.bl.destinations.0.source", "earlier destination"),
        (_mutate_source_is_destination, "beamlines.bl.destinations.1", "source and destination are both 'a'"),
        (_mutate_copy_to_the_watched_endpoint, "beamlines.bl.destinations.0", "both 'src'"),
        (_mutate_duplicate_destination, "beamlines.bl.destinations.1.endpoint", "already holds"),
        (_mutate_dotted_beamline, "beamlines.bl.733", "subject token"),
        (_mutate_dotted_endpoint, "endpoints.data.733", "letters, digits"),
        (_mutate_watch_globus, "beamlines.bl.watch.endpoint", "filesystem"),
        (_mutate_globus_from_a_folder_without_a_collection, "beamlines.bl.destinations.2", "'b' is a folder"),
    ],
    ids=lambda v: v.__name__.removeprefix("_mutate_") if callable(v) else None,
)
def test_cross_check_problems_carry_the_dotted_field_path(mutate: Any, field: str, says: str) -> None:
    raw = _base()
    mutate(raw)
    problems = _problems(raw)
    matching = [p for p in problems if p.startswith(f"{field}: ") and says in p]
    assert matching, problems


def test_cross_check_reports_every_problem_at_once() -> None:
    raw = _base()
    _mutate_unknown_watch(raw)
    _mutate_unknown_destination(raw)
    raw["beamlines"]["bl2.x"] = copy.deepcopy(_base()["beamlines"]["bl"])
    problems = _problems(raw)
    assert any(p.startswith("beamlines.bl.watch.endpoint:") for p in problems)
    assert any(p.startswith("beamlines.bl.destinations.1.endpoint:") for p in problems)
    assert any(p.startswith("beamlines.bl2.x:") for p in problems)


def test_cross_check_runs_on_a_model_built_in_code() -> None:
    config = BeamflowConfig.model_validate(_base())
    assert cross_check(config) == []
    broken = _base()
    _mutate_watch_globus(broken)
    assert cross_check(BeamflowConfig.model_validate(broken)) == [
        "beamlines.bl.watch.endpoint: the watcher needs a filesystem endpoint"
    ]


# --- field validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffixes", [["h5"], [".h5", ".h5"], [".a/b"], []])
def test_bad_suffixes_name_the_field(suffixes: list[str]) -> None:
    raw = _base()
    raw["beamlines"]["x"] = raw["beamlines"].pop("bl")
    raw["beamlines"]["x"]["scan"]["suffixes"] = suffixes
    problems = _problems(raw)
    assert any(p.startswith("beamlines.x.scan.suffixes: ") for p in problems), problems


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ((), "colour"),
        (("beamlines", "bl"), "retention"),
        (("beamlines", "bl", "watch"), "interval"),
        (("delivery",), "max_deliveries"),
    ],
)
def test_an_unknown_field_is_refused(where: tuple[str, ...], field: str) -> None:
    raw = _base()
    raw.setdefault("delivery", {})
    section = raw
    for key in where:
        section = section[key]
    section[field] = 1
    problems = _problems(raw)
    dotted = ".".join((*where, field))
    assert any(p.startswith(f"{dotted}: ") and "Extra inputs" in p for p in problems), problems


def test_an_unknown_endpoint_kind_and_a_bad_uuid_are_refused() -> None:
    raw = _base()
    raw["endpoints"]["a"]["kind"] = "s3"
    raw["endpoints"]["remote"]["collection_id"] = "not-a-uuid"
    problems = _problems(raw)
    assert any(p.startswith("endpoints.a: ") for p in problems), problems
    assert any(p.startswith("endpoints.remote.globus.collection_id: ") for p in problems), problems


def test_a_globus_endpoint_needs_secret_references_not_values() -> None:
    raw = _base()
    raw["endpoints"]["remote"]["client_secret"] = "hunter2"
    problems = _problems(raw)
    assert any(p.startswith("endpoints.remote.globus.client_secret: ") for p in problems), problems
    assert not any("hunter2" in p for p in problems)


def test_watch_mode_must_be_inotify_or_poll() -> None:
    raw = _base()
    raw["beamlines"]["bl"]["watch"]["mode"] = "fanotify"
    assert any(p.startswith("beamlines.bl.watch.mode: ") for p in _problems(raw))


# --- export control -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scan_path", "expected"),
    [
        ("restricted/sample1", True),
        ("restricted/deep/folder/sample1", True),
        ("user/export_controlled/sample1", True),
        ("a/b/export_controlled/sample1", True),
        ("export_controlled/sample1", False),
        ("unrestricted/sample1", False),
        ("public/sample1", False),
        ("restricted", False),
    ],
)
def test_export_control_matches(scan_path: str, expected: bool) -> None:
    rule = ExportControl(path_globs=["restricted/*", "*/export_controlled/*"])
    assert rule.matches(scan_path) is expected


def test_no_globs_match_nothing() -> None:
    assert not ExportControl().matches("restricted/sample1")
    assert not ExportControl(path_globs=[]).matches("anything")


# --- environment checks ---------------------------------------------------------------------------------


def _env_config(tmp_path: Path) -> BeamflowConfig:
    raw = _base()
    for name in ("src", "a", "b"):
        raw["endpoints"][name]["root"] = name
        if name != "b":
            (tmp_path / name).mkdir()
    return load_config(_write(tmp_path, raw))


def test_environment_problems_report_a_missing_root_and_unset_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_GLOBUS_ID", raising=False)
    monkeypatch.setenv("TEST_GLOBUS_SECRET", "s3cret-value")
    problems = environment_problems(_env_config(tmp_path))
    assert len(problems) == 2, problems
    assert problems[0].startswith("endpoints.b.root: ") and str(tmp_path / "b") in problems[0]
    assert problems[1].startswith("endpoints.remote.client_id: ") and "TEST_GLOBUS_ID" in problems[1]
    assert not any("s3cret-value" in p for p in problems)


def test_no_environment_problems_when_everything_is_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _env_config(tmp_path)
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("TEST_GLOBUS_ID", "client")
    monkeypatch.setenv("TEST_GLOBUS_SECRET", "secret")
    assert environment_problems(config) == []


def test_a_root_that_is_a_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GLOBUS_ID", "client")
    monkeypatch.setenv("TEST_GLOBUS_SECRET", "secret")
    config = _env_config(tmp_path)
    (tmp_path / "b").write_text("not a folder")
    assert environment_problems(config) == [f"endpoints.b.root: {tmp_path / 'b'} is not a folder on this machine"]


def fs(root: Path, keep_for: str | None = None, check: str | None = None) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"kind": "filesystem", "root": str(root)}
    if keep_for is not None:
        endpoint["retention"] = {"keep_for": keep_for, "check_endpoint": check}
    return endpoint


def test_retention_needs_a_known_check_endpoint_other_than_itself(tmp_path: Path) -> None:
    raw = {"endpoints": {"spot": fs(tmp_path, "1d", "x"), "data": fs(tmp_path, "35d", "data")}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, tmp_path)
    problems = caught.value.problems
    assert any("endpoints.spot.retention.check_endpoint: no endpoint named 'x'" in p for p in problems)
    assert any("endpoints.data.retention.check_endpoint: a copy on the same endpoint" in p for p in problems)


def test_retention_in_days_is_parsed(tmp_path: Path) -> None:
    raw = {"endpoints": {"spot": fs(tmp_path, "180d", "data"), "data": fs(tmp_path)}}
    rule = parse_config(raw, tmp_path).endpoints["spot"].retention
    assert rule is not None and rule.keep_for.days == 180


CATALOG = {
    "destination": "a",
    "technique": "tomography-832",
    "creation_location": "/ALS/8.3.2",
    "defaults": {"owner_group": "staff", "contact_email": "bl@example.org", "principal_investigator": "Staff"},
}


def test_catalogued_beamlines_in_the_shipped_configs(no_beamflow_env: None) -> None:
    bl733 = load_config(CONFIG_DIR / "bl733.yaml")
    catalog = bl733.beamlines["bl733"].catalog
    assert catalog is not None and (catalog.destination, catalog.read_from) == ("nersc733", "data733")
    assert bl733.catalog.password.env == "BEAMFLOW_SCICAT_PASSWORD" and bl733.catalog.url
    bl832 = load_config(CONFIG_DIR / "bl832.yaml").beamlines["bl832"].catalog
    assert bl832 is not None and bl832.destination == "data832" and bl832.technique == "tomography-832"
    demo = load_config(CONFIG_DIR / "demo.yaml")
    assert demo.catalog.url is None, "the demo uses the local SciCat"
    assert {bl.catalog.technique for bl in demo.beamlines.values() if bl.catalog} == {
        "saxs-waxs-733",
        "tomography-832",
    }


def test_catalog_must_name_a_destination_and_a_readable_filesystem_copy() -> None:
    raw = _base()
    raw["beamlines"]["bl"]["catalog"] = {**CATALOG, "destination": "remote"}
    assert any("catalog.destination" in p and "not one of this beamline's destinations" in p for p in _problems(raw))
    raw["beamlines"]["bl"]["destinations"].append({"endpoint": "remote", "source": "a"})
    assert any("catalog.read_from" in p and "filesystem" in p for p in _problems(raw))
    raw["beamlines"]["bl"]["catalog"]["read_from"] = "a"
    config = parse_config(raw, Path("/"))
    assert config.beamlines["bl"].catalog is not None


def test_catalog_password_is_reported_when_a_remote_scicat_is_configured(tmp_path: Path, no_beamflow_env: None) -> None:
    raw = _base()
    for endpoint in raw["endpoints"].values():
        if endpoint["kind"] == "filesystem":
            endpoint["root"] = str(tmp_path)
    raw["beamlines"]["bl"]["catalog"] = CATALOG
    raw["catalog"] = {"url": "https://scicat.example.org/api/v3", "password": {"env": "TEST_SCICAT_PW"}}
    config = parse_config(raw, Path("/"))
    assert any(p.startswith("catalog.password: $TEST_SCICAT_PW") for p in environment_problems(config))
    raw.pop("catalog")
    assert not any("catalog" in p for p in environment_problems(parse_config(raw, Path("/"))))


def test_archive_policy_needs_an_archive_endpoint_and_a_reachable_filesystem_source() -> None:
    raw = _base()
    raw["endpoints"]["tape"] = {"kind": "tar", "root": "/data/tape"}
    raw["beamlines"]["bl"]["archive"] = {"endpoint": "a", "source": "remote"}
    problems = _problems(raw)
    assert any("archive.endpoint" in p and "not an archive" in p for p in problems)
    assert any("archive.source" in p for p in problems)
    raw["beamlines"]["bl"]["archive"] = {"endpoint": "tape", "source": "b", "when": "per_scan"}
    config = parse_config(raw, Path("/"))
    policy = config.beamlines["bl"].archive
    assert policy is not None and policy.proposal_of("ALS-11123/2026/scan_1") == "ALS-11123"
    assert policy.proposal_of("loose_scan") is None


def test_nothing_copies_into_an_archive_and_a_proposal_pattern_needs_its_group() -> None:
    raw = _base()
    raw["endpoints"]["tape"] = {"kind": "tar", "root": "/data/tape"}
    raw["beamlines"]["bl"]["destinations"].append({"endpoint": "tape"})
    assert any(p.startswith("endpoints.tape: an archive is written by the archiver only") for p in _problems(raw))
    raw = _base()
    raw["endpoints"]["tape"] = {"kind": "tar", "root": "/data/tape"}
    raw["beamlines"]["bl"]["archive"] = {"endpoint": "tape", "source": "b", "proposal_pattern": "^([^/]+)/"}
    assert any("named group 'proposal'" in p for p in _problems(raw))


def test_environment_check_reports_a_missing_archive_folder_and_unset_hpss_secrets(
    tmp_path: Path, no_beamflow_env: None
) -> None:
    raw = _base()
    raw["endpoints"]["tape"] = {"kind": "tar", "root": str(tmp_path / "no-such-folder")}
    raw["endpoints"]["hpss"] = {
        "kind": "hpss",
        "root": "/home/a/alsdev",
        "api_base_url": "https://sfapi.example.org/api/v1.2",
        "token_url": "https://sfapi.example.org/token",
        "client_id": {"env": "TEST_SFAPI_ID"},
        "private_key": {"file_env": "TEST_SFAPI_KEY_FILE"},
    }
    problems = environment_problems(parse_config(raw, Path("/")))
    assert any(p.startswith("endpoints.tape.root:") for p in problems)
    assert any(p.startswith("endpoints.hpss.client_id: $TEST_SFAPI_ID") for p in problems)
    assert any(p.startswith("endpoints.hpss.private_key:") for p in problems)


def test_analysis_needs_a_site_a_copied_source_and_reachable_scratch_and_outputs() -> None:
    raw = _base()
    raw["beamlines"]["bl"]["analysis"] = {
        "name": "iq",
        "site": "nowhere",
        "source": "src",
        "output_endpoint": "b",
        "command": ["{python}", "-m", "x"],
    }
    problems = _problems(raw)
    assert any("analysis.site" in p and "'nowhere'" in p for p in problems), problems
    assert any("analysis.source" in p and "is watched, not copied to" in p for p in problems), problems
    raw["compute"] = {"hpc": {"kind": "local", "scratch": "remote"}}
    raw["beamlines"]["bl"]["analysis"].update(site="hpc", source="b")
    problems = _problems(raw)
    assert any("(staging)" in p and "'b' is a folder that Globus must reach" in p for p in problems), problems
    raw["beamlines"]["bl"]["analysis"].update(source="a", output_endpoint="a")
    assert parse_config(raw, Path("/")).beamlines["bl"].analysis is not None
    raw["compute"]["hpc"]["scratch"] = "missing"
    assert any(p.startswith("compute.hpc.scratch: no endpoint named 'missing'") for p in _problems(raw))
