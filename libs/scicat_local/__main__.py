"""Run the local SciCat: ``python -m beamflow.scicat_local --db PATH [--port N] [--users FILE] ...``.

Prints one line ``local SciCat listening on http://HOST:PORT/api/v3`` to stderr once the port is bound (with
``--port 0`` the line names the port the system chose), then serves until SIGTERM or SIGINT and exits 0.
Exit status 2 for a bad command line or unusable users, 1 when the port cannot be bound.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from beamflow.common.standin_http import ServerThread, wait_for_stop_signal
from beamflow.scicat_local.api import DEFAULT_PID_PREFIX, DEFAULT_TOKEN_TTL
from beamflow.scicat_local.auth import (
    PASSWORD_ENV,
    USERNAME_ENV,
    USERS_FILE_ENV,
    User,
    UsersError,
    hash_password,
    load_users_file,
    users_from_environment,
)
from beamflow.scicat_local.server import LISTENING_MESSAGE, base_url, make_server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m beamflow.scicat_local",
        description=(
            "A local SciCat: the /api/v3 subset beamflow and pyscicat use (login, datasets, origdatablocks, "
            "attachments), with the backend's validation, stored in one SQLite file."
        ),
        epilog=(
            f"Users come from --users FILE (default: ${USERS_FILE_ENV}) and/or ${USERNAME_ENV} with "
            f"${PASSWORD_ENV}. A users file is JSON or YAML: {{users: [{{username, password | password_hash, "
            "email, groups}]} or a mapping username -> password. Make a password_hash with --hash-password."
        ),
    )
    parser.add_argument("--db", type=Path, help="SQLite file holding the catalog (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=3000, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--users", type=Path, help=f"users file (default: ${USERS_FILE_ENV})")
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PID_PREFIX,
        help="prefix of generated pids, '<prefix>/<uuid4>' (default: %(default)s)",
    )
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=DEFAULT_TOKEN_TTL,
        metavar="SECONDS",
        help="lifetime of a login token in seconds (default: %(default)s)",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default: %(default)s)")
    parser.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password (from stdin, or a prompt on a terminal), print its password_hash and exit",
    )
    return parser


def _load_users(args: argparse.Namespace) -> dict[str, User]:
    environ = dict(os.environ)
    if args.users:
        environ.pop(USERS_FILE_ENV, None)  # --users replaces the file the environment names
    users = users_from_environment(environ)
    if args.users:
        users.update(load_users_file(args.users))
    if not users:
        raise UsersError(
            f"no users: give --users FILE, or set ${USERS_FILE_ENV}, or ${USERNAME_ENV} and ${PASSWORD_ENV}"
        )
    return users


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            parser.error("an empty password cannot be hashed")
        print(hash_password(password))
        return 0
    if args.db is None:
        parser.error("--db is required")
    if args.token_ttl < 0:
        parser.error("--token-ttl must not be negative")
    try:
        users = _load_users(args)
    except UsersError as exc:
        parser.error(str(exc))
    try:
        server = make_server(
            args.db, users, host=args.host, port=args.port, pid_prefix=args.prefix, token_ttl=args.token_ttl
        )
    except OSError as exc:
        print(f"local SciCat cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    # Served from a thread: this one waits for the signal, and shutdown() cannot be called from the serving loop.
    serving = ServerThread(server, "scicat-local").start()
    wait_for_stop_signal(f"{LISTENING_MESSAGE}{base_url(server)}")
    serving.stop()
    server.api.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
