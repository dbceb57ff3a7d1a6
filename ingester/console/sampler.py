"""A short history of the pipeline, sampled while the console runs: the consumer group's lag
(per partition, and in total) and the events applied per second since the previous sample.

One sample every :data:`SAMPLE_S` seconds (by default), the last :data:`KEEP` kept in memory
(a console that restarts starts a new history); the overview draws them. A sample that cannot reach
the broker or the database keeps ``None`` for what it could not read and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import errors as kafka_errors

from consumers import db
from consumers.lag import PartitionLag, group_lag
from consumers.overview import applied_since, database_now
from consumers.registry import build_handlers, topics_for
from core.settings import Settings

SAMPLE_S = 5.0
KEEP = 180  # 15 minutes
# What a sample survives: the broker or the database unreachable or failing.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    LookupError,
    kafka_errors.KafkaError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)

log = logging.getLogger("ingester.console")


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    lag: int | None  # the group's total lag
    rate: float | None  # events applied per second since the previous sample


class Sampler:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, interval_s: float = SAMPLE_S
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.interval_s = interval_s
        self.history: deque[Sample] = deque(maxlen=KEEP)
        self.partitions: list[PartitionLag] | None = None  # the latest lag read
        self.problem: str | None = None  # why the latest sample lacks something
        self._topics = topics_for(settings.topic_prefix, build_handlers(()))
        self._last: datetime | None = None  # the database's clock at the previous sample

    async def sample(self) -> Sample:
        problems = []
        try:
            self.partitions = await group_lag(
                self.settings, self.settings.consumer_group, self._topics
            )
        except UNAVAILABLE as exc:
            self.partitions = None
            problems.append(f"broker: {type(exc).__name__}: {exc}")
        rate = None
        try:
            rate = await self._rate()
        except UNAVAILABLE as exc:
            problems.append(f"database: {type(exc).__name__}: {exc}")
        lag = None if self.partitions is None else sum(p.lag for p in self.partitions)
        sample = Sample(datetime.now(UTC), lag, rate)
        self.history.append(sample)
        self.problem = "; ".join(problems) or None
        return sample

    async def _rate(self) -> float | None:
        async with db.connection(self.pool) as conn:
            if self._last is None:
                self._last = await database_now(conn)
                return None
            now, events = await applied_since(conn, self._last)
        seconds, self._last = (now - self._last).total_seconds(), now
        return events / seconds if seconds > 0 else None

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            await self.sample()
            if self.problem:
                log.warning("console sample incomplete", extra={"error": self.problem})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
