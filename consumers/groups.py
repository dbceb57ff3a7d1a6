"""The apply step of a batch: one transaction per source, the sources concurrently, poison
isolated by retrying in halves; and the dead letters the batch leaves.

Each source's group runs in its own transaction(s) (at most ``CONSUMER_APPLY_CONCURRENCY`` at
once) and to its end even when another fails, so a retry after an outage redoes only what
did not commit (:class:`~consumers.isolate.Progress` keeps what is settled).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from consumers import dlq
from consumers.apply import Report, apply_in_transaction
from consumers.classify import Failure, classify
from consumers.decode import Item
from consumers.isolate import Progress, isolate
from consumers.policies import ApplyPolicy
from consumers.types import Context, Handler
from contract.headers import CE_SOURCE

log = logging.getLogger("consumers.runner")

GroupKey = str  # ce_source: one transaction (or isolated slices) per source of a batch
Progresses = Mapping[GroupKey, Progress[Item, Report]]
RACE_RETRIES = 3  # immediate retries of a deadlocked transaction before the outage path


def by_source(items: Iterable[Item]) -> dict[GroupKey, list[Item]]:
    """Items by source, each group in offset order. Not by partition as well: a handler
    call costs a handful of statements and a commit whatever its size, so per-partition
    transactions would multiply them (six partitions: six times the statements and commits
    for the same events) on the same two cores."""
    groups: dict[GroupKey, list[Item]] = {}
    for item in items:
        assert item.event is not None
        groups.setdefault(item.event.source, []).append(item)
    return groups


class GroupApply:
    """Applies a batch's groups with ``handlers`` in ``pool``; ``beat`` after every
    transaction (the loop's liveness)."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        pool: asyncpg.Pool,
        policy: ApplyPolicy,
        *,
        scope: str,
        beat: Callable[[], None],
    ) -> None:
        self.handlers = handlers
        self.pool = pool
        self.policy = policy
        self.scope = scope
        self.beat = beat

    async def __call__(
        self, groups: Mapping[GroupKey, Sequence[Item]], progress: Progresses
    ) -> None:
        """Every group to its end, then the worst failure (a bug over an outage) is raised."""
        gate = asyncio.Semaphore(self.policy.concurrency)

        async def one(key: GroupKey) -> None:
            async with gate:
                for attempt in range(RACE_RETRIES + 1):
                    try:
                        await self._isolate(groups[key], progress[key])
                        return
                    except asyncpg.exceptions.TransactionRollbackError as exc:
                        # A lost race (deadlock, serialization failure) with a concurrent
                        # transaction: its rival has committed or rolled back by now, so
                        # retry at once instead of pausing the consumer for an outage.
                        if attempt == RACE_RETRIES:
                            raise
                        log.info("transaction lost a race; retrying", extra={"error": str(exc)})
                        await asyncio.sleep(random.uniform(0.0, 0.05))

        outcomes = await asyncio.gather(*(one(k) for k in groups), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise worst(failures)

    async def _isolate(self, items: Sequence[Item], progress: Progress[Item, Report]) -> None:
        await isolate(
            items,
            self._apply,
            key=lambda i: (i.raw.topic, i.raw.partition, i.raw.offset),
            event_id=lambda i: i.event.id if i.event else None,
            progress=progress,
            beat=self.beat,
        )

    async def _apply(self, items: Sequence[Item]) -> Report:
        ctx = Context(environment=self.policy.environment, now=datetime.now(UTC))
        events = [i.event for i in items if i.event is not None]
        return await apply_in_transaction(
            self.pool,
            self.handlers,
            events,
            ctx,
            scope=self.scope,
            timeout_s=self.policy.transaction_timeout_s,
            backoff_max_s=self.policy.backoff_max_s,
        )


def worst(failures: Sequence[BaseException]) -> BaseException:
    """What to raise when several transactions failed: anything that is not an outage (a
    bug, a crash) wins, so it is never retried away."""
    for exc in failures:
        if not isinstance(exc, Exception) or classify(exc) is not Failure.RETRYABLE:
            return exc
    return failures[0]


def dead_letters(items: Sequence[Item], progress: Progresses) -> list[dlq.DeadLetter]:
    """The batch's dead letters: the undecodable records, then the isolated poison in
    (topic, partition, offset) order."""
    dead = [
        dlq.DeadLetter(i.raw, i.error, 1, source=i.raw.header(CE_SOURCE), event_id=i.error.event_id)
        for i in items
        if i.error is not None
    ]
    poisoned = sorted(
        (p for g in progress.values() for p in g.poisoned),
        key=lambda p: (p.item.raw.topic, p.item.raw.partition, p.item.raw.offset),
    )
    return dead + [
        dlq.DeadLetter(
            p.item.raw,
            p.error,
            p.attempts,
            source=p.item.event.source if p.item.event else None,
            event_id=p.item.event.id if p.item.event else None,
        )
        for p in poisoned
    ]
