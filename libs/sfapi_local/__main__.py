"""Run the NERSC stand-in: ``python -m beamflow.sfapi_local --state DIR [--port N] [--hpss-user NAME] ...``.

Starts a LocalSlurm (installing Slurm with apt-get when missing, as root), the SFAPI stand-in and the fake HPSS
under DIR, registers one client -- the public key given with ``--client-id``/``--public-key``, or a new key pair
written to ``--key-file`` (default ``DIR/client.json``, the ``{"client_id", "secret"}`` file sfapi-client reads with
``Client(key=...)``) -- and prints ``local SFAPI listening on <api_base_url> token <token_url>`` to stderr. Serves
until SIGTERM or SIGINT, then stops Slurm and exits 0; exits 1 when Slurm or the port cannot be had, 2 for a bad
command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from beamflow.common.standin_http import wait_for_stop_signal
from beamflow.sfapi_local.api import DEFAULT_QOS
from beamflow.sfapi_local.auth import ClientCredentials, make_client_credentials
from beamflow.sfapi_local.server import LISTENING_MESSAGE
from beamflow.sfapi_local.slurm import SlurmUnavailable
from beamflow.sfapi_local.testing import LocalNersc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m beamflow.sfapi_local",
        description="A local NERSC: the Superfacility API subset sfapi-client uses, on a real local Slurm, "
        "with htar/hsi stand-ins working on a folder that plays HPSS.",
    )
    parser.add_argument("--state", type=Path, required=True, help="folder for Slurm, jobs, the fake HPSS and keys")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--hpss-user", default="alsdev", help="HPSS user, home /home/<x>/<user> (default: %(default)s)")
    parser.add_argument("--qos", default=",".join(DEFAULT_QOS), help="comma-separated QOS the site offers")
    parser.add_argument("--client-id", help="register this client id (with --public-key)")
    parser.add_argument("--public-key", type=Path, help="PEM public key of --client-id")
    parser.add_argument("--key-file", type=Path, help="where to write a new client's key (default: STATE/client.json)")
    parser.add_argument("--log-level", default="WARNING", help="logging level on stderr (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(args.client_id) != bool(args.public_key):
        parser.error("--client-id and --public-key go together")
    if args.client_id:
        credentials = ClientCredentials(args.client_id, "", args.public_key.read_text())
    else:
        credentials = make_client_credentials()
        key_file = credentials.write_key_file(args.key_file or args.state / "client.json")
        print(f"client {credentials.client_id}: key written to {key_file}", file=sys.stderr, flush=True)
    qos = [name for name in args.qos.split(",") if name]
    nersc = LocalNersc(
        args.state, hpss_user=args.hpss_user, host=args.host, port=args.port, qos=qos, credentials=credentials
    )
    try:
        nersc.start()
    except (SlurmUnavailable, OSError) as exc:
        print(f"local SFAPI cannot start: {exc}", file=sys.stderr)
        return 1
    wait_for_stop_signal(f"{LISTENING_MESSAGE}{nersc.api_base_url} token {nersc.token_url}")
    nersc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
