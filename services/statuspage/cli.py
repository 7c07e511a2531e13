"""``beamflow status-page``: serve the status page until SIGTERM or Ctrl-C (registered through the
``beamflow.commands`` entry point, so the core CLI never imports the page). ``beamflow up`` runs it as one of
its processes; in a cluster it is a Deployment of its own running this command.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from beamflow.common.bus_auth import client_auth
from beamflow.common.cli_options import DEFAULT_CONFIG, ConfigOption, NatsOption, bus_url, load_or_exit
from beamflow.common.logs import configure_logging
from beamflow.statuspage.app import StatusPage

log = logging.getLogger("beamflow.statuspage")

DEFAULT_PORT = 8780


def status_page(
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
    host: Annotated[
        str,
        typer.Option(help="Address to listen on. 0.0.0.0 serves other machines: put the facility's login in front."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free one; the log says which).", min=0, max=65535)
    ] = DEFAULT_PORT,
    log_level: Annotated[str, typer.Option(help="debug (every request), info, warning or error.")] = "info",
) -> None:
    """Serve the status page: recent scans with a timeline per stage, one scan's detail, the dead letters.

    A scan's detail: copies with checksums, archive bundle, catalog link, holds and expiry, prunes, failures.
    Each dead letter has a Replay button, and every page updates live as the services work.
    JSON: /api/scans, /api/scans/SCAN, /api/deadletters. Server-Sent Events: /api/events. Health: /healthz.
    """
    loaded = load_or_exit(config)
    url = bus_url(loaded, nats_url)
    configure_logging("statuspage", log_level)
    # Replaying deletes the dead letter: the page acts as the operator (its own user where nats sets one).
    page = StatusPage(loaded, url, host=host, port=port, auth=client_auth(loaded, operator=True))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await page.start()
        log.info("status page serving", extra={"url": page.url})
        try:
            await stop.wait()
        finally:
            await page.stop()
            log.info("status page stopped")

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    app.command("status-page")(status_page)
