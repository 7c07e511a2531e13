"""Who may log in to the local SciCat: users loaded from a file or the environment, and password checks.

Production never has a password in code: the users come from a JSON or YAML file (``--users``) or from
``BEAMFLOW_SCICAT_LOCAL_USERNAME`` / ``BEAMFLOW_SCICAT_LOCAL_PASSWORD``. A file may hold plain passwords (a
test fixture) or PBKDF2 hashes made by ``hash_password`` (``python -m beamflow.scicat_local --hash-password``).

File shapes accepted::

    users:                                  # a list of entries ...
      - username: ingestor
        password_hash: pbkdf2_sha256$...    # or password: ...
        email: ingestor@example.org         # optional
        groups: [ingestor]                  # optional
    # ... or simply a mapping  {ingestor: "<password>"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

USERNAME_ENV = "BEAMFLOW_SCICAT_LOCAL_USERNAME"
PASSWORD_ENV = "BEAMFLOW_SCICAT_LOCAL_PASSWORD"
USERS_FILE_ENV = "BEAMFLOW_SCICAT_LOCAL_USERS"

_HASH_SCHEME = "pbkdf2_sha256"
# Enough to make an offline guess slow, cheap enough that a login stays well under a second on a small VM.
_HASH_ITERATIONS = 200_000


class UsersError(ValueError):
    """The users file or environment is unusable; the message says what to fix."""


@dataclass(frozen=True)
class User:
    """One account. Exactly one of ``password`` (plain) and ``password_hash`` is set."""

    username: str
    password: str | None = field(default=None, repr=False)
    password_hash: str | None = field(default=None, repr=False)
    email: str = ""
    groups: tuple[str, ...] = ()

    def check_password(self, candidate: str) -> bool:
        """True when ``candidate`` is this user's password; constant-time in the comparison."""
        if self.password_hash is not None:
            return verify_password(candidate, self.password_hash)
        if self.password is None:
            return False
        return hmac.compare_digest(candidate.encode(), self.password.encode())

    def public(self) -> dict[str, Any]:
        """What the login answer tells about the user (never the password)."""
        return {"_id": self.username, "username": self.username, "email": self.email, "groups": list(self.groups)}


def hash_password(password: str, *, iterations: int = _HASH_ITERATIONS) -> str:
    """A salted PBKDF2-SHA256 hash in the form ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches a hash made by ``hash_password``; False for a malformed hash."""
    try:
        scheme, iterations, salt_hex, digest_hex = encoded.split("$")
        if scheme != _HASH_SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def load_users_file(path: Path) -> dict[str, User]:
    """Read users from a JSON (``.json``) or YAML file; raises ``UsersError`` naming the problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsersError(f"cannot read users file {path}: {exc.strerror}") from exc
    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise UsersError(f"users file {path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from exc
    return users_from_data(data, source=str(path))


def users_from_data(data: Any, *, source: str = "users") -> dict[str, User]:
    """Build users from the parsed file content (see the module docstring for the two shapes)."""
    if isinstance(data, Mapping) and "users" in data:
        entries = data["users"]
    elif isinstance(data, Mapping):
        entries = [{"username": name, "password": pw} for name, pw in data.items()]
    else:
        raise UsersError(f"{source}: expected a mapping with a 'users' list, or a mapping username -> password")
    if not isinstance(entries, list):
        raise UsersError(f"{source}: 'users' must be a list")
    users: dict[str, User] = {}
    for index, entry in enumerate(entries):
        user = _user_from_entry(entry, where=f"{source}: users[{index}]")
        if user.username in users:
            raise UsersError(f"{source}: user {user.username!r} is listed twice")
        users[user.username] = user
    return users


def _user_from_entry(entry: Any, *, where: str) -> User:
    if not isinstance(entry, Mapping):
        raise UsersError(f"{where}: expected a mapping with username and password or password_hash")
    unknown = set(entry) - {"username", "password", "password_hash", "email", "groups"}
    if unknown:
        raise UsersError(f"{where}: unknown keys {sorted(unknown)}")
    username, password, password_hash = entry.get("username"), entry.get("password"), entry.get("password_hash")
    if not isinstance(username, str) or not username:
        raise UsersError(f"{where}: 'username' must be a non-empty string")
    if (password is None) == (password_hash is None):
        raise UsersError(f"{where}: give exactly one of 'password' and 'password_hash'")
    for name, value in (("password", password), ("password_hash", password_hash)):
        if value is not None and (not isinstance(value, str) or not value):
            raise UsersError(f"{where}: {name!r} must be a non-empty string")
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise UsersError(f"{where}: 'groups' must be a list of strings")
    email = entry.get("email", "")
    if not isinstance(email, str):
        raise UsersError(f"{where}: 'email' must be a string")
    return User(username, password=password, password_hash=password_hash, email=email, groups=tuple(groups))


def users_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, User]:
    """The users named by the environment: a users file, and/or one username/password pair."""
    env = os.environ if environ is None else environ
    users: dict[str, User] = {}
    if env.get(USERS_FILE_ENV):
        users.update(load_users_file(Path(env[USERS_FILE_ENV])))
    username, password = env.get(USERNAME_ENV), env.get(PASSWORD_ENV)
    if bool(username) != bool(password):
        raise UsersError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")
    if username and password:
        users[username] = User(username, password=password)
    return users
