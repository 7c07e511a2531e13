"""Where the local SciCat keeps its catalog: one SQLite file (WAL), JSON documents per table.

Tables ``datasets`` (key ``pid``), ``origdatablocks`` and ``attachments`` (key ``id``, with the dataset's pid)
and ``tokens`` (the SHA-256 of each token, so the file never holds a usable one). The catalog therefore
survives a restart of the server. One connection is shared under a lock: every request is a few
milliseconds of SQLite work, and a lock keeps read-modify-write updates (PATCH, the size a new datablock
adds to its dataset) atomic without thinking about isolation levels.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    pid TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS origdatablocks (
    id TEXT PRIMARY KEY,
    dataset_pid TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS origdatablocks_by_dataset ON origdatablocks (dataset_pid);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY,
    dataset_pid TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attachments_by_dataset ON attachments (dataset_pid);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
"""

Doc = dict[str, Any]


class DuplicateKey(Exception):
    """A document with this key already exists."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CatalogStore:
    """The catalog's documents in one SQLite file; safe to use from many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the server's handler threads share this connection, under self._lock.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across a process crash in WAL mode; only an OS crash may lose the last commit.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # Datasets -----------------------------------------------------------------------------------------

    def insert_dataset(self, doc: Doc) -> None:
        """Store a new dataset; ``DuplicateKey`` when its pid exists."""
        try:
            with self._transaction() as conn:
                conn.execute("INSERT INTO datasets (pid, doc) VALUES (?, ?)", (doc["pid"], json.dumps(doc)))
        except sqlite3.IntegrityError:
            raise DuplicateKey(doc["pid"]) from None

    def get_dataset(self, pid: str) -> Doc | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM datasets WHERE pid = ?", (pid,)).fetchone()
        return None if row is None else _load(row[0])

    def datasets(self) -> list[Doc]:
        """Every dataset, in creation order (the order a query without ``order`` returns)."""
        with self._lock:
            rows = self._conn.execute("SELECT doc FROM datasets ORDER BY rowid").fetchall()
        return [_load(row[0]) for row in rows]

    def datasets_with_keyword(self, keyword: str) -> list[Doc]:
        """The datasets whose ``keywords`` list holds ``keyword``, in creation order (matched inside SQLite)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT doc FROM datasets WHERE EXISTS "
                "(SELECT 1 FROM json_each(doc, '$.keywords') WHERE json_each.value = ?) ORDER BY rowid",
                (keyword,),
            ).fetchall()
        return [_load(row[0]) for row in rows]

    def update_dataset(self, pid: str, change: Callable[[Doc], Doc]) -> Doc | None:
        """Replace a dataset by ``change(current)`` atomically; None when the pid is unknown."""
        with self._transaction() as conn:
            row = conn.execute("SELECT doc FROM datasets WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                return None
            updated = change(_load(row[0]))
            conn.execute("UPDATE datasets SET doc = ? WHERE pid = ?", (json.dumps(updated), pid))
            return updated

    def delete_dataset(self, pid: str) -> Doc | None:
        """Remove a dataset (not its datablocks or attachments, as the backend's v3 delete); None if unknown."""
        with self._transaction() as conn:
            row = conn.execute("SELECT doc FROM datasets WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM datasets WHERE pid = ?", (pid,))
            return _load(row[0])

    # Origdatablocks and attachments ---------------------------------------------------------------------

    def insert_origdatablock(self, block: Doc, update_dataset: Callable[[Doc], Doc]) -> Doc | None:
        """Store a datablock and apply ``update_dataset`` to its dataset in one transaction.

        None (and nothing stored) when the dataset does not exist.
        """
        pid = block["datasetId"]
        with self._transaction() as conn:
            row = conn.execute("SELECT doc FROM datasets WHERE pid = ?", (pid,)).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT INTO origdatablocks (id, dataset_pid, doc) VALUES (?, ?, ?)",
                (block["id"], pid, json.dumps(block)),
            )
            conn.execute("UPDATE datasets SET doc = ? WHERE pid = ?", (json.dumps(update_dataset(_load(row[0]))), pid))
            return block

    def origdatablocks(self, pid: str | None = None) -> list[Doc]:
        return self._children("origdatablocks", pid)

    def insert_attachment(self, attachment: Doc) -> None:
        """Store an attachment; ``DuplicateKey`` when its id exists."""
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO attachments (id, dataset_pid, doc) VALUES (?, ?, ?)",
                    (attachment["id"], attachment["datasetId"], json.dumps(attachment)),
                )
        except sqlite3.IntegrityError:
            raise DuplicateKey(attachment["id"]) from None

    def attachments(self, pid: str | None = None) -> list[Doc]:
        return self._children("attachments", pid)

    def _children(self, table: str, pid: str | None) -> list[Doc]:
        # `table` is one of two literals above, never user input.
        with self._lock:
            if pid is None:
                rows = self._conn.execute(f"SELECT doc FROM {table} ORDER BY rowid").fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT doc FROM {table} WHERE dataset_pid = ? ORDER BY rowid", (pid,)
                ).fetchall()
        return [_load(row[0]) for row in rows]

    # Tokens -----------------------------------------------------------------------------------------------

    def add_token(self, token: str, username: str, created: float, expires: float) -> None:
        with self._transaction() as conn:
            # Forget long-expired tokens as new ones are issued, so the table does not grow forever.
            conn.execute("DELETE FROM tokens WHERE expires < ?", (created - 86_400,))
            conn.execute(
                "INSERT INTO tokens (token_sha256, username, created, expires) VALUES (?, ?, ?, ?)",
                (_digest(token), username, created, expires),
            )

    def token_user(self, token: str, now: float) -> str | None:
        """The user a token was issued to, or None when it is unknown or expired at ``now``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT username, expires FROM tokens WHERE token_sha256 = ?", (_digest(token),)
            ).fetchone()
        if row is None or now >= row[1]:
            return None
        return str(row[0])


def _load(text: str) -> Doc:
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc
