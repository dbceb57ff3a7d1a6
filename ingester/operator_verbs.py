"""The parsers of ``ingester console`` and ``ingester replay`` (docs/contract.md §9); like
every verb, each imports what it runs only when it runs."""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from typing import Any

from contract.topics import STREAM_OF_SOURCE, STREAMS
from core.errors import CommandError
from core.settings import Settings


def _source(value: str) -> str:
    """A stream name; a source's name (``app``) is taken for its stream (``experiments``)."""
    stream = STREAM_OF_SOURCE.get(value.strip(), value.strip())
    if stream not in STREAMS:
        raise argparse.ArgumentTypeError(
            f"unknown source {value!r}; choose from {', '.join(STREAMS)}"
        )
    return stream


def _time(value: str) -> datetime:
    from ingester.replay import parse_time

    return parse_time(value)


def add_to(verbs: argparse._SubParsersAction[Any]) -> None:
    verbs.add_parser(
        "console", help="serve the operator console on CONSOLE_PORT (needs CONSOLE_TOKEN)"
    ).set_defaults(run=_console)
    replay = verbs.add_parser(
        "replay", help="re-read a source's topic over a time window and apply it again"
    )
    replay.set_defaults(run=_replay)
    replay.add_argument(
        "--source", type=_source, required=True, help="one of " + ", ".join(STREAMS)
    )
    replay.add_argument(
        "--since",
        type=_time,
        required=True,
        metavar="T",
        help="from this time (RFC 3339 or a date)",
    )
    replay.add_argument(
        "--until",
        type=_time,
        default=None,
        metavar="T",
        help="up to this time (default: the topic's end when the replay starts)",
    )
    replay.add_argument(
        "--reapply",
        action="store_true",
        help="apply even the events the inbox holds (rebuilding a fresh database)",
    )


def _console(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.console.app import serve_console

    return serve_console(settings)


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.replay import Window
    from ingester.replay import replay_command

    if args.until is not None and args.until <= args.since:
        raise CommandError("--until must be later than --since", exit_code=2)
    window = Window(args.source, args.since, args.until, args.reapply)
    return asyncio.run(replay_command(settings, window))
