"""Secret references: resolved from the environment (or a file it names), never shown, clear when missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from beamflow.common.errors import ConfigError
from beamflow.common.secrets import SecretRef
from pydantic import SecretStr, ValidationError

VALUE = "s3cr3t-Value-42"


def test_env_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BF_SECRET", VALUE)
    ref = SecretRef(env="TEST_BF_SECRET")
    assert ref.is_set()
    resolved = ref.resolve()
    assert isinstance(resolved, SecretStr)
    assert resolved.get_secret_value() == VALUE


def test_file_env_resolves_and_strips_the_trailing_newline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(VALUE + "\n")
    monkeypatch.setenv("TEST_BF_SECRET_FILE", str(secret_file))
    ref = SecretRef(file_env="TEST_BF_SECRET_FILE")
    assert ref.is_set()
    assert ref.resolve().get_secret_value() == VALUE


def test_the_value_is_read_when_resolved_not_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretRef(env="TEST_BF_SECRET")
    monkeypatch.setenv("TEST_BF_SECRET", "first")
    assert ref.resolve().get_secret_value() == "first"
    monkeypatch.setenv("TEST_BF_SECRET", "rotated")
    assert ref.resolve().get_secret_value() == "rotated"


@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_env_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("TEST_BF_MISSING", raising=False)
    else:
        monkeypatch.setenv("TEST_BF_MISSING", value)
    ref = SecretRef(env="TEST_BF_MISSING")
    assert not ref.is_set()
    with pytest.raises(ConfigError) as caught:
        ref.resolve()
    assert len(caught.value.problems) == 1
    assert "TEST_BF_MISSING" in caught.value.problems[0]


def test_a_missing_file_env_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_BF_MISSING_FILE", raising=False)
    ref = SecretRef(file_env="TEST_BF_MISSING_FILE")
    assert not ref.is_set()
    with pytest.raises(ConfigError, match="TEST_BF_MISSING_FILE"):
        ref.resolve()


def test_an_unreadable_secret_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BF_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError) as caught:
        SecretRef(file_env="TEST_BF_SECRET_FILE").resolve()
    assert "TEST_BF_SECRET_FILE" in caught.value.problems[0]
    assert "cannot be read" in caught.value.problems[0]


def test_the_value_does_not_appear_in_repr_or_str(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_BF_SECRET", VALUE)
    secret_file = tmp_path / "secret"
    secret_file.write_text(VALUE)
    monkeypatch.setenv("TEST_BF_SECRET_FILE", str(secret_file))
    for ref in (SecretRef(env="TEST_BF_SECRET"), SecretRef(file_env="TEST_BF_SECRET_FILE")):
        resolved = ref.resolve()
        assert resolved.get_secret_value() == VALUE
        for shown in (repr(resolved), str(resolved), f"{resolved}", repr(ref), str(ref), ref.describe()):
            assert VALUE not in shown


def test_describe_names_the_source() -> None:
    assert SecretRef(env="TEST_BF_SECRET").describe() == "$TEST_BF_SECRET"
    assert SecretRef(file_env="TEST_BF_SECRET_FILE").describe() == "file named by $TEST_BF_SECRET_FILE"


@pytest.mark.parametrize(
    "fields",
    [{}, {"env": "A", "file_env": "B"}],
    ids=["neither", "both"],
)
def test_exactly_one_of_env_and_file_env(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'env'"):
        SecretRef(**fields)


def test_unknown_fields_and_literal_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        SecretRef.model_validate({"value": VALUE})
    with pytest.raises(ValidationError):
        SecretRef.model_validate({"env": "A", "value": VALUE})
    with pytest.raises(ValidationError):
        SecretRef.model_validate(VALUE)
