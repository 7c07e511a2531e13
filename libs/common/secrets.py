"""Secrets are read from the environment, or from a file whose path the environment names; never from config.

A config file only says *where* a secret comes from (the variable's name). The value is read when needed,
held in a ``SecretStr`` so it does not show up in reprs or logs, and a missing one is a clear error naming
the variable to set.
"""

from __future__ import annotations

import os
from pathlib import Path

from beamflow.common.errors import ConfigError
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator


class SecretRef(BaseModel):
    """Where a secret comes from: ``env: NAME`` (the value) or ``file_env: NAME`` (a path to a file holding it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file_env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file_env is None):
            raise ValueError(
                "give exactly one of 'env' (variable holding the secret) or 'file_env' "
                "(variable holding the path of a file with the secret)"
            )
        return self

    def describe(self) -> str:
        return f"${self.env}" if self.env else f"file named by ${self.file_env}"

    def is_set(self) -> bool:
        name = self.env or self.file_env
        return bool(name and os.environ.get(name))

    def resolve(self) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError([f"secret missing: set the environment variable {self.env}"])
            return SecretStr(value)
        assert self.file_env is not None
        path = os.environ.get(self.file_env)
        if not path:
            raise ConfigError([f"secret missing: set {self.file_env} to the path of the file holding it"])
        try:
            return SecretStr(Path(path).read_text().strip())
        except OSError as exc:
            raise ConfigError([f"secret file named by {self.file_env} cannot be read: {exc.strerror}"]) from exc
