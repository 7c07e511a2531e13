"""``beamflow dlq list|show|replay|purge``: what services gave up on, why, and getting it going again.

The usual round: ``list`` to see what failed, ``show SEQ`` for the reason and the original message, fix the
cause (a missing file, a beamline missing from the config), ``replay SEQ`` to have the service process the
original again as a new message; ``purge`` for dead letters nobody will replay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import nats.errors
import typer
from beamflow.common import deadletters, subjects
from beamflow.common.cli_options import (
    DEFAULT_CONFIG,
    ConfigOption,
    NatsOption,
    bus_url,
    console,
    load_or_exit,
    operator_bus,
    out,
)
from beamflow.common.deadletters import DeadLetter, DeadLetterFilter, Replayed
from beamflow.common.errors import BeamflowError, DeadLetterUnreadable
from nats.js import JetStreamContext
from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text

T = TypeVar("T")

#: Results go to stdout; piped into a file or another program they keep their full width.

REASON_WIDTH = 70

dlq_app = typer.Typer(
    help=(
        "Dead letters: messages a service gave up on, with the reason and the original message. "
        "List them, show one, replay the original once the cause is fixed, or purge them."
    ),
    no_args_is_help=True,
)

StageOption = Annotated[
    str | None,
    typer.Option("--stage", "-s", help="Only dead letters whose original was this stage: new, moved, ... (or hold)."),
]
BeamlineOption = Annotated[str | None, typer.Option("--beamline", "-b", help="Only this beamline.")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="Only dead letters written by this service.")]
SeqsArgument = Annotated[
    list[int] | None,
    typer.Argument(help="Sequence numbers of dead letters (the seq column of `beamflow dlq list`).", min=1),
]
AllOption = Annotated[
    bool, typer.Option("--all", help="Every dead letter matching --stage/--beamline/--service (all if none).")
]


# -- plumbing shared by the commands ------------------------------------------------------------------------


def _run(config: Path, nats_url: str | None, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run ``work`` against the bus; any failure is one red line on stderr and exit code 1."""
    url = bus_url(load_or_exit(config), nats_url)

    async def main() -> T:
        async with operator_bus(url) as js:
            return await work(js)

    try:
        return asyncio.run(main())
    except BeamflowError as exc:
        console.print(Text(str(exc), style="red"))
        raise typer.Exit(1) from None
    except nats.errors.Error as exc:
        console.print(Text(f"NATS at {url} refused the request: {exc!r}", style="red"))
        raise typer.Exit(1) from None


def _filter(stage: str | None, beamline: str | None, service: str | None) -> DeadLetterFilter:
    for name, value in (("--stage", stage), ("--beamline", beamline)):
        if value is not None and not subjects.is_token(value):
            raise typer.BadParameter(f"{value!r} is not a subject token (letters, digits, '-', '_')", param_hint=name)
    return DeadLetterFilter(stage=stage, beamline=beamline, service=service)


def _selection(seqs: list[int] | None, all_: bool, where: DeadLetterFilter, verb: str) -> DeadLetterFilter | list[int]:
    if seqs and all_:
        raise typer.BadParameter(f"give sequence numbers or --all, not both: which dead letters to {verb}?")
    if seqs:
        if where != DeadLetterFilter():
            raise typer.BadParameter("--stage, --beamline and --service select dead letters with --all only")
        return seqs
    if not all_:
        raise typer.BadParameter(f"name the dead letters to {verb} by sequence (see `beamflow dlq list`), or --all")
    return where


def when(moment: datetime) -> str:
    """A time as operators read it: local, to the second, with its zone."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def shorten(text: str, width: int = REASON_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def letters_table(letters: list[DeadLetter], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("seq", "time", "beamline", "stage", "service", "error type", "scan id", "reason"):
        table.add_column(column, no_wrap=column != "reason", justify="right" if column == "seq" else "left")
    for letter in letters:
        event = letter.event
        table.add_row(
            str(letter.seq),
            when(letter.stored_at),
            Text(event.beamline),
            Text(letter.stage or "-"),
            Text(event.service),
            Text(event.error_type),
            Text(event.scan_id or "-"),
            Text(shorten(event.reason)),
        )
    return table


def _data(letter: DeadLetter) -> RenderableType:
    original = letter.original
    if original.data_encoding == "base64":
        try:
            size = f"{len(deadletters.original_bytes(original, letter.seq))} bytes"
        except DeadLetterUnreadable:
            size = "not even valid base64"
        return Text(f"(not UTF-8: {size}, shown as base64)\n{original.data}")
    try:
        json.loads(original.data)
    except ValueError:
        return Text(original.data or "(empty)")
    return JSON(original.data)


def letter_report(letter: DeadLetter) -> Group:
    event, original = letter.event, letter.original
    head = Table.grid(padding=(0, 2))
    for name, value in (
        ("seq", str(letter.seq)),
        ("stored", when(letter.stored_at)),
        ("beamline", event.beamline),
        ("scan id", event.scan_id or "-"),
        ("service", f"{event.service} (consumer {event.consumer})"),
        ("error type", event.error_type),
        ("permanent", "yes: retrying could not help" if event.permanent else "no: deliveries ran out"),
        ("deliveries", str(event.deliveries)),
        ("reason", event.reason),
        ("original", original.subject or "(not captured)"),
        ("from", f"{original.stream or '-'} sequence {original.stream_seq or '-'}"),
    ):
        head.add_row(name, Text(value))
    headers = Table(title="original headers", title_justify="left")
    headers.add_column("header")
    headers.add_column("value")
    for name, value in sorted(original.headers.items()):
        headers.add_row(Text(name), Text(value))
    return Group(head, headers, Text("original data", style="italic"), _data(letter))


def _replayed_line(done: Replayed) -> Text:
    letter = done.letter
    what = f"dead letter {letter.seq} ({letter.event.scan_id or 'no scan id'}): {letter.original.subject}"
    if done.duplicate:
        where = "already replayed within the duplicate window; the server kept the earlier copy"
    else:
        where = f"stored as {done.stream} message {done.stream_seq}"
    fate = "dead letter kept" if done.kept else "dead letter removed"
    return Text(f"replayed {what} -> {where}; {fate}")


# -- the commands -----------------------------------------------------------------------------------------


@dlq_app.command("list")
def list_letters(
    stage: StageOption = None,
    beamline: BeamlineOption = None,
    service: ServiceOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many, the newest.", min=1)] = 50,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """List dead letters, oldest first: when, which beamline, stage and service, the error and the reason."""
    where = _filter(stage, beamline, service)
    letters = _run(config, nats_url, lambda js: deadletters.read(js, where))
    shown = letters[-limit:]
    title = f"{len(letters)} dead letter(s) ({where.describe()})"
    if len(shown) < len(letters):
        title += f", the newest {len(shown)} shown (--limit)"
    out.print(letters_table(shown, title))
    if letters:
        out.print("`beamflow dlq show SEQ` for one in full; `beamflow dlq replay SEQ` once the cause is fixed")


@dlq_app.command("show")
def show(
    seq: Annotated[int, typer.Argument(help="Sequence number of the dead letter (see `beamflow dlq list`).", min=1)],
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Show one dead letter in full: the reason, and the original message's subject, headers and data."""
    letter = _run(config, nats_url, lambda js: deadletters.get(js, seq))
    out.print(letter_report(letter))


@dlq_app.command("replay")
def replay(
    seqs: SeqsArgument = None,
    all_: AllOption = False,
    stage: StageOption = None,
    beamline: BeamlineOption = None,
    service: ServiceOption = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the dead letter after replaying it.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Publish originals again, as new messages, to the subject they came from; then remove the dead letters.

    Fix the cause first (create the missing file; add the beamline to the config and restart the service).
    The service processes a replayed message exactly like a new one, and dead-letters it again if it fails.
    """
    selection = _selection(seqs, all_, _filter(stage, beamline, service), "replay")

    async def work(js: JetStreamContext) -> tuple[list[Replayed], list[str]]:
        done: list[Replayed] = []
        failed: list[str] = []
        chosen = selection if isinstance(selection, list) else [x.seq for x in await deadletters.read(js, selection)]
        for seq in chosen:
            try:
                done.append(await deadletters.replay(js, seq, keep=keep))
            except BeamflowError as exc:  # one that cannot be replayed does not stop the others
                failed.append(str(exc))
        return done, failed

    done, failed = _run(config, nats_url, work)
    for replayed in done:
        out.print(_replayed_line(replayed))
    for problem in failed:
        console.print(Text(problem, style="red"))
    if not done and not failed:
        out.print("no dead letters match; nothing replayed")
    out.print(f"{len(done)} replayed, {len(failed)} not")
    if failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def purge(
    seqs: SeqsArgument = None,
    all_: AllOption = False,
    stage: StageOption = None,
    beamline: BeamlineOption = None,
    service: ServiceOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Really delete; without it, only say what would go.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    nats_url: NatsOption = None,
) -> None:
    """Delete dead letters for good (their originals are not replayed). Needs --yes; without it, a preview."""
    selection = _selection(seqs, all_, _filter(stage, beamline, service), "purge")
    if not yes:
        letters = _run(config, nats_url, lambda js: deadletters.select(js, selection))
        out.print(letters_table(letters, f"{len(letters)} dead letter(s) would be purged"))
        console.print("nothing deleted: add --yes to purge these")
        raise typer.Exit(1)
    deleted = _run(config, nats_url, lambda js: deadletters.purge(js, selection))
    listed = ", ".join(str(x.seq) for x in deleted) or "none"
    out.print(f"purged {len(deleted)} dead letter(s): {listed}")
