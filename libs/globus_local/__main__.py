"""Run the Globus stand-in: ``python -m beamflow.globus_local --state DIR --collection UUID=PATH ...``.

Serves Globus Auth and the Transfer API on ``--host``/``--port`` (default 127.0.0.1, any free port), exposing
each ``--collection UUID=PATH`` (``UUID=PATH:ro`` for a read-only one) and one client: ``--client-id`` and
``--client-secret``, or a new one written to ``--credentials-file`` (default ``DIR/client.json``,
``{"client_id", "client_secret"}``, mode 0600). Prints ``local Globus listening on <url>`` and the two
``GLOBUS_SDK_SERVICE_URL_*`` lines to stderr, serves until SIGTERM or SIGINT, then exits 0; 1 when the port
cannot be had, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from pathlib import Path

from beamflow.common.standin_http import wait_for_stop_signal
from beamflow.globus_local.auth import ClientCredentials
from beamflow.globus_local.server import LISTENING_MESSAGE
from beamflow.globus_local.testing import LocalGlobus, make_client_credentials


def parse_collection(text: str) -> tuple[str, Path, bool]:
    """``UUID=PATH`` or ``UUID=PATH:ro`` -> (id, folder, writable)."""
    collection_id, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected UUID=PATH, got {text!r}")
    try:
        collection_id = str(uuid.UUID(collection_id))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{collection_id!r} is not a UUID") from None
    writable = not path.endswith(":ro")
    return collection_id, Path(path.removesuffix(":ro")), writable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m beamflow.globus_local",
        description="A local Globus: the Auth token endpoint and the Transfer API globus-sdk uses, "
        "copying and deleting real files in local folders that play collections.",
    )
    parser.add_argument("--state", type=Path, required=True, help="folder for the client credentials file")
    parser.add_argument(
        "--collection",
        type=parse_collection,
        action="append",
        default=[],
        metavar="UUID=PATH[:ro]",
        help="expose PATH as collection UUID (repeatable; ':ro' makes it read-only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--client-id", help="register this client id (with --client-secret)")
    parser.add_argument("--client-secret", help="the secret of --client-id")
    parser.add_argument(
        "--credentials-file", type=Path, help="where to write a new client (default: STATE/client.json)"
    )
    parser.add_argument("--retry-interval", type=float, default=1.0, help="seconds between task retries (default: 1)")
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.client_id) != bool(args.client_secret):
        parser.error("--client-id and --client-secret go together")
    if args.client_id:
        credentials = ClientCredentials(args.client_id, args.client_secret)
    else:
        credentials = make_client_credentials()
        target: Path = args.credentials_file or args.state / "client.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600)
        target.chmod(0o600)
        target.write_text(json.dumps({"client_id": credentials.client_id, "client_secret": credentials.client_secret}))
        print(f"client {credentials.client_id}: credentials written to {target}", file=sys.stderr, flush=True)
    globus = LocalGlobus(
        args.state, host=args.host, port=args.port, credentials=credentials, retry_interval=args.retry_interval
    )
    for collection_id, folder, writable in args.collection:
        globus.add_collection(collection_id, folder, writable=writable)
    try:
        globus.start()
    except OSError as exc:
        print(f"local Globus cannot start: {exc}", file=sys.stderr)
        return 1
    wait_for_stop_signal(
        f"{LISTENING_MESSAGE}{globus.transfer_url}", *(f"{name}={value}" for name, value in globus.env.items())
    )
    globus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
