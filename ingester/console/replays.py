"""The console's replay of a source over a time window (the same as ``ingester replay``,
without ``--reapply``: against the live database the inbox makes it safe), run in the
background of the console process, one at a time; the Replay page follows its progress."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import aclosing
from dataclasses import dataclass, field

import asyncpg
from aiokafka import errors as kafka_errors

from consumers.errors import ConsumerError
from consumers.replay import ReplayProgress, Window, replay
from core.settings import Settings

log = logging.getLogger("ingester.console")

FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    LookupError,
    ConsumerError,
    kafka_errors.KafkaError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


@dataclass(slots=True)
class Run:
    """One replay started from the console: by whom, its progress, how it ended."""

    window: Window
    who: str
    progress: ReplayProgress | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


class Replays:
    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.last: Run | None = None

    def start(self, window: Window, who: str) -> Run | None:
        """Start replaying ``window``; None while another replay runs."""
        if self.last is not None and self.last.running:
            return None
        run = Run(window, who)
        run.task = asyncio.create_task(self._run(run), name="console-replay")
        self.last = run
        return run

    async def _run(self, run: Run) -> None:
        try:
            async with aclosing(replay(self.settings, run.window, pool=self.pool)) as steps:
                async for progress in steps:
                    run.progress = progress
        except FAILURES as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            log.warning("console replay failed", extra={"error": run.error})

    async def close(self) -> None:
        """Stop a replay in progress (its committed progress stays: started again, the same
        window resumes)."""
        if self.last is not None and self.last.task is not None:
            self.last.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.last.task
