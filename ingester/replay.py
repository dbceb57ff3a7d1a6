"""``ingester replay --source S --since T [--until T] [--reapply]``: re-read a source's topic
over a time window and apply it through the consumers' handlers (:mod:`consumers.replay`).

On a terminal a progress bar on stderr follows the reading; otherwise a plain line every
tenth of the way. The summary is one line on stdout.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import aclosing
from datetime import UTC, datetime
from typing import TextIO

from consumers.replay import ReplayProgress, Window, replay
from contract.records import rfc3339
from core.settings import Settings

BAR_WIDTH = 30
OUTCOMES = (
    ("applied", "applied"),
    ("duplicate", "already applied"),
    ("skipped", "skipped"),
    ("pending", "parked"),
    ("failed", "failed"),
)


def parse_time(text: str) -> datetime:
    """RFC 3339 (``2026-05-01T12:00:00Z``) or a date (``2026-05-01``, midnight UTC); a time
    without an offset is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (RFC 3339, e.g. 2026-05-01T12:00:00Z, or a date)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def bar(progress: ReplayProgress, width: int = BAR_WIDTH) -> str:
    """``replay kit [#########.....]  60% 600/1000 records``"""
    fraction = progress.read / progress.total if progress.total else 1.0
    filled = min(width, int(fraction * width))
    return (
        f"replay {progress.window.stream} [{'#' * filled}{'.' * (width - filled)}]"
        f" {fraction:4.0%} {progress.read}/{progress.total} records"
    )


def summary(progress: ReplayProgress) -> str:
    """The one line a replay ends with."""
    window = progress.window
    until = rfc3339(window.until) if window.until else "the end"
    counts = ", ".join(f"{word} {progress.outcomes.get(key, 0)}" for key, word in OUTCOMES)
    return (
        f"replayed {window.stream} from {rfc3339(window.since)} to {until}"
        f"{' (resumed)' if progress.resumed else ''}{' (reapply)' if window.reapply else ''}:"
        f" read {progress.read} records ({progress.outside} outside the window); {counts}"
    )


class ProgressView:
    """Shows a replay's progress on ``stream``: a bar redrawn in place on a terminal, a
    plain line at each tenth otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._tenth = -1

    def show(self, progress: ReplayProgress) -> None:
        if self._tty:
            self._stream.write("\r" + bar(progress))
            self._stream.flush()
            return
        tenth = int(10 * progress.read / progress.total) if progress.total else 10
        if tenth > self._tenth:
            self._tenth = tenth
            print(bar(progress, width=10), file=self._stream, flush=True)

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def replay_command(settings: Settings, window: Window, *, err: TextIO | None = None) -> int:
    """Run the replay, showing its progress on ``err`` (stderr), then print the summary."""
    view = ProgressView(err or sys.stderr)
    last: ReplayProgress | None = None
    try:
        async with aclosing(replay(settings, window)) as steps:
            async for last in steps:
                view.show(last)
    finally:
        view.close()
    assert last is not None
    print(summary(last))
    return 0
