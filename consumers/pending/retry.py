"""The retry of pending events, until their target row exists (docs/contract.md §6, Pending).

An event is parked, with its inbox row, when its handler finds no target row (unknown revenue
cat id, unknown email, unknown Klaviyo profile, unknown experiment...), together with the keys
it waits for (:mod:`consumers.pending.waits`) and a next attempt time. A pass picks up only the rows
that are due: woken because one of their keys was inserted (``sql/0004``'s triggers leave a
wake-up), or whose capped exponential backoff is over; so it costs what became ready, not what
is parked. Due rows are retried a chunk per transaction in provider time order through the
same handlers: rows that applied or were skipped are deleted, the rest are parked again with
a doubled delay. Rows parked longer than ``PENDING_MAX_AGE_DAYS`` move to ``ingest_skipped``
as ``expired: <reason>`` with their payload, replayable with ``pending retry --expired``.

Retries of different processes never apply one event twice: each transaction locks its rows
first and skips rows another holds. An event that fails deterministically is dead-lettered and
its inbox row released, so a replay from the DLQ can apply it; only if its row is still parked
when it is buried (another replica may have applied it meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import orjson

from consumers import db, metrics, store
from consumers.apply import park_results, run_handlers
from consumers.decode import RawRecord
from consumers.dlq import DeadLetter, DeadLetterSink, log_row
from consumers.isolate import Poisoned, Progress, isolate
from consumers.pending import store as pending
from consumers.pending.browse import PendingCount, summary
from consumers.pending.policy import UNBOUNDED, Budget, PendingPolicy
from consumers.pending.store import EXPIRED_PREFIX, PendingRow
from consumers.types import Context, Handler, Outcome
from contract.headers import encode_headers
from contract.records import rfc3339
from contract.topics import STREAM_OF_SOURCE, topic_name
from core.settings import Settings

_START = (datetime(1970, 1, 1, tzinfo=UTC), "", "")


@dataclass(slots=True)
class RetryReport:
    """Events by (source, outcome): applied, skipped, pending (still parked) or dead."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    woken: int = 0  # parked rows made due by wake-ups
    expired: int = 0  # parked rows moved to ingest_skipped as expired
    more: bool = False  # the pass stopped at its budget with due rows left

    def count(self, source: str, outcome: str, events: int = 1) -> None:
        if events:
            key = (source, outcome)
            self.counts[key] = self.counts.get(key, 0) + events

    def add(self, other: RetryReport) -> None:
        for (source, outcome), events in other.counts.items():
            self.count(source, outcome, events)
        self.woken += other.woken
        self.expired += other.expired
        self.more = self.more or other.more

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def totals(self) -> dict[str, int]:
        return {o: self.total(o) for o in ("applied", "skipped", "pending", "dead")}


def as_raw(row: PendingRow, topic_prefix: str) -> RawRecord:
    """The record a parked event was read as, rebuilt for the DLQ (key, value, CloudEvents
    headers); its position is the one the inbox remembers."""
    event = row.event
    origin = row.origin
    topic = (
        origin.topic
        if origin
        else topic_name(topic_prefix, STREAM_OF_SOURCE.get(event.source, event.source))
    )
    return RawRecord(
        topic=topic,
        partition=origin.partition if origin else -1,
        offset=origin.offset if origin else -1,
        key=event.partition_key.encode(),
        value=orjson.dumps(event.data),
        headers=encode_headers(
            event_id=event.id,
            source=event.source,
            event_type=event.type,
            time=rfc3339(event.time),
            partition_key=event.partition_key,
            received_at=None,
        ),
    )


class PendingRetry:
    """Retries the parked events of the given handlers' sources.

    :meth:`run_pass` is the consumer's periodic pass: consume wake-ups (target keys that
    appeared), expire rows older than the policy's ``max_age_days``, then retry the rows that
    are due (woken, or whose backoff is over) within the budget. :meth:`run` is the
    operator's ``pending retry``: every parked row, now.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
        policy: PendingPolicy,
        dead_letters: DeadLetterSink,
        *,
        environment: str,
        topic_prefix: str,
        scope: str = "",
    ) -> None:
        self.pool = pool
        self.policy = policy
        self._handlers = handlers
        self._environment = environment
        self._prefix = topic_prefix
        self._dead_letters = dead_letters
        self._scope = scope
        self._sources = [store.stored_source(s, scope) for s in handlers]

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
        dead_letters: DeadLetterSink,
        *,
        scope: str = "",
    ) -> PendingRetry:
        return cls(
            pool,
            handlers,
            PendingPolicy.from_settings(settings),
            dead_letters,
            environment=settings.environment,
            topic_prefix=settings.topic_prefix,
            scope=scope,
        )

    async def run(self) -> RetryReport:
        """Retry every parked event now (those parked during the pass wait for the next)."""
        async with db.connection(self.pool) as conn:
            await pending.make_all_due(conn, self._sources)
        return await self.run_pass(UNBOUNDED, expire=False)

    async def run_pass(
        self,
        budget: Budget | None = None,
        *,
        expire: bool = True,
        stop: asyncio.Event | None = None,
    ) -> RetryReport:
        """One pass within ``budget`` (the policy's by default); returns what it did
        (``report.more`` when it stopped at the budget with due rows left)."""
        budget = budget or self.policy.budget
        started = time.monotonic()
        total = RetryReport()
        async with db.transaction(self.pool) as conn:
            woken = await pending.wake(conn, budget.wakes)
            # The database's clock, not ours: woken rows are due at its now().
            due: datetime = await conn.fetchval("SELECT clock_timestamp()")
        total.woken = woken.rows
        if expire:
            total.add(await self._expire(budget.expire))
        cursor: tuple[datetime, str, str] = _START
        done = 0
        while True:
            if stop is not None and stop.is_set():
                total.more = True
                return total
            if budget.max_s is not None and time.monotonic() - started >= budget.max_s:
                total.more = True
                return total
            limit = budget.chunk
            if budget.max_rows is not None:
                limit = min(limit, budget.max_rows - done)
                if limit <= 0:
                    total.more = True
                    return total
            async with db.connection(self.pool) as conn:
                rows = await pending.select_due(
                    conn, self._handlers, due, cursor, limit, self._scope
                )
            if not rows:
                return total
            last = rows[-1]
            cursor = (
                last.next_attempt_at or due,
                store.stored_source(last.event.source, self._scope),
                last.event.id,
            )
            done += len(rows)
            total.add(await self._retry(sorted(rows, key=lambda r: r.event.time)))

    async def _expire(self, limit: int) -> RetryReport:
        report = RetryReport()
        async with db.transaction(self.pool) as conn:
            reasons = await pending.expire(conn, self._sources, self.policy.max_age_days, limit)
        for reason in reasons:
            metrics.PENDING_EXPIRED.labels(reason.removeprefix(EXPIRED_PREFIX)).inc()
        report.expired = len(reasons)
        return report

    async def retry_rows(self, rows: Sequence[PendingRow]) -> RetryReport:
        """Retry these parked rows now, whatever their next attempt time (the console's
        "retry now"); rows another process holds or already settled are passed over."""
        return await self._retry(sorted(rows, key=lambda r: r.event.time))

    async def _retry(self, rows: Sequence[PendingRow]) -> RetryReport:
        progress: Progress[PendingRow, RetryReport] = Progress()
        await isolate(
            rows,
            self._apply,
            key=lambda r: (r.event.source, r.event.id),
            event_id=lambda r: r.event.id,
            progress=progress,
        )
        report = RetryReport()
        for part in progress.results:
            report.add(part)
        if progress.poisoned:
            for p in await self._bury(progress.poisoned):
                report.count(p.item.event.source, "dead")
        return report

    async def _apply(self, rows: Sequence[PendingRow]) -> RetryReport:
        ctx = Context(environment=self._environment, now=datetime.now(UTC))
        async with db.transaction(self.pool) as conn:
            locked = await pending.lock(conn, [r.event for r in rows], self._scope)
            events = [r.event for r in rows if (r.event.source, r.event.id) in locked]
            results, _ = await run_handlers(conn, self._handlers, events, ctx)
            done = [e for e, r in results if r.outcome is not Outcome.PENDING]
            skipped = [(e, r.reason or "") for e, r in results if r.outcome is Outcome.SKIPPED]
            await pending.delete(conn, [(e.source, e.id) for e in done], self._scope)
            await store.record_skipped(conn, skipped, self._scope)
            await park_results(conn, results, self._scope, backoff_max_s=self.policy.backoff_max_s)
        report = RetryReport()
        for event, result in results:
            report.count(event.source, result.outcome.value)
        return report

    async def _bury(self, poisoned: Sequence[Poisoned[PendingRow]]) -> list[Poisoned[PendingRow]]:
        """Dead-letter the poisoned rows this transaction takes out of the pending table, and
        release their inbox rows so a replay from the DLQ can apply them; returns them. A row
        that is gone (another replica applied it: its inbox row is its effect's) or held by
        another worker is left alone. The dead letters are published before the commit: if
        the publish fails nothing is taken, and the rows are retried later."""
        keys = [(p.item.event.source, p.item.event.id) for p in poisoned]
        async with db.transaction(self.pool) as conn:
            taken = await pending.take(conn, keys, self._scope)
            dead = [p for p, k in zip(poisoned, keys, strict=True) if k in taken]
            if not dead:
                return []
            letters = [
                DeadLetter(
                    as_raw(p.item, self._prefix),
                    p.error,
                    p.attempts,
                    source=p.item.event.source,
                    event_id=p.item.event.id,
                )
                for p in dead
            ]
            await self._dead_letters.publish(letters)
            await store.log_dead_letters(conn, [log_row(letter) for letter in letters])
            await store.release_inbox(conn, sorted(taken), self._scope)
        return dead

    async def revive_expired(self) -> int:
        """Put the expired events of these sources back in the pending table, due now."""
        async with db.transaction(self.pool) as conn:
            return await pending.revive_expired(conn, self._sources)


async def refresh_gauges(pool: asyncpg.Pool) -> list[PendingCount]:
    """Set consumer_pending_events and consumer_pending_oldest_age_seconds from the table."""
    async with db.connection(pool) as conn:
        counts = await summary(conn)
    metrics.PENDING_EVENTS.clear()
    for count in counts:
        metrics.PENDING_EVENTS.labels(count.reason).set(count.events)
    metrics.PENDING_OLDEST_AGE.set(max((c.oldest_age_s for c in counts), default=0.0))
    return counts
