"""Parked events: retried until their target row exists (docs/contract.md §6, Pending).

An event is parked, with its inbox row, when its handler finds no target row (unknown revenue
cat id, unknown email, unknown Klaviyo profile). A retry reads the parked events in provider
time order, runs them through the same handlers and, in the same transaction, deletes the
rows that applied or were skipped and counts an attempt on the rest. Retries of different
processes never apply one event twice: each transaction locks its rows first and skips rows
another holds. An event that fails deterministically is dead-lettered and its inbox row
released, so a replay from the DLQ can apply it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import orjson

from consumers import db, metrics, store
from consumers.apply import run_handlers
from consumers.decode import RawRecord
from consumers.dlq import DeadLetter, log_row
from consumers.isolate import Poisoned, Progress, isolate
from consumers.types import Context, Handler, Outcome
from contract.records import (
    CE_ID,
    CE_PARTITIONKEY,
    CE_SOURCE,
    CE_SPECVERSION,
    CE_TIME,
    CE_TYPE,
    CONTENT_TYPE,
    STREAM_OF_SOURCE,
    rfc3339,
)
from core.topics import topic_name

_START = (datetime(1970, 1, 1, tzinfo=UTC), "", "")


@dataclass(slots=True)
class RetryReport:
    """Events by (source, outcome): applied, skipped, pending (still parked) or dead."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, source: str, outcome: str, events: int = 1) -> None:
        if events:
            key = (source, outcome)
            self.counts[key] = self.counts.get(key, 0) + events

    def add(self, other: RetryReport) -> None:
        for (source, outcome), events in other.counts.items():
            self.count(source, outcome, events)

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def totals(self) -> dict[str, int]:
        return {o: self.total(o) for o in ("applied", "skipped", "pending", "dead")}


def as_raw(row: store.PendingRow, topic_prefix: str) -> RawRecord:
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
        headers=(
            (CE_SPECVERSION, b"1.0"),
            (CE_ID, event.id.encode()),
            (CE_SOURCE, event.source.encode()),
            (CE_TYPE, event.type.encode()),
            (CE_TIME, rfc3339(event.time).encode()),
            (CE_PARTITIONKEY, event.partition_key.encode()),
            (CONTENT_TYPE, b"application/json"),
        ),
    )


DeadLetterSink = Callable[[Sequence[DeadLetter]], Awaitable[None]]


class PendingRetry:
    """Retries the parked events of the given handlers' sources."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
        *,
        environment: str,
        topic_prefix: str,
        dead_letters: DeadLetterSink,
        scope: str = "",
        chunk: int = 500,
    ) -> None:
        self._pool = pool
        self._handlers = handlers
        self._environment = environment
        self._prefix = topic_prefix
        self._dead_letters = dead_letters
        self._scope = scope
        self._chunk = chunk

    async def run(self) -> RetryReport:
        """One pass over every parked event (those parked during the pass wait for the next)."""
        total = RetryReport()
        cursor = _START
        while True:
            async with db.connection(self._pool) as conn:
                rows = await store.select_pending(
                    conn, self._handlers, cursor, self._chunk, self._scope
                )
            if not rows:
                return total
            last = rows[-1].event
            cursor = (last.time, store.stored_source(last.source, self._scope), last.id)
            total.add(await self._retry(rows))

    async def _retry(self, rows: Sequence[store.PendingRow]) -> RetryReport:
        progress: Progress[store.PendingRow, RetryReport] = Progress()
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
            await self._bury(progress.poisoned)
            for p in progress.poisoned:
                report.count(p.item.event.source, "dead")
        return report

    async def _apply(self, rows: Sequence[store.PendingRow]) -> RetryReport:
        ctx = Context(environment=self._environment, now=datetime.now(UTC))
        async with db.transaction(self._pool) as conn:
            locked = await store.lock_pending(conn, [r.event for r in rows], self._scope)
            events = [r.event for r in rows if (r.event.source, r.event.id) in locked]
            results, _ = await run_handlers(conn, self._handlers, events, ctx)
            done = [e for e, r in results if r.outcome is not Outcome.PENDING]
            skipped = [(e, r.reason or "") for e, r in results if r.outcome is Outcome.SKIPPED]
            still = [(e, r.reason or "") for e, r in results if r.outcome is Outcome.PENDING]
            await store.delete_pending(conn, [(e.source, e.id) for e in done], self._scope)
            await store.record_skipped(conn, skipped, self._scope)
            await store.park_pending(conn, still, self._scope)
        report = RetryReport()
        for event, result in results:
            report.count(event.source, result.outcome.value)
        return report

    async def _bury(self, poisoned: Sequence[Poisoned[store.PendingRow]]) -> None:
        letters = [
            DeadLetter(
                as_raw(p.item, self._prefix),
                p.error,
                p.attempts,
                source=p.item.event.source,
                event_id=p.item.event.id,
            )
            for p in poisoned
        ]
        keys = [(p.item.event.source, p.item.event.id) for p in poisoned]
        await self._dead_letters(letters)
        async with db.transaction(self._pool) as conn:
            await store.log_dead_letters(conn, [log_row(letter) for letter in letters])
            await store.delete_pending(conn, keys, self._scope)
            await store.release_inbox(conn, keys, self._scope)


async def refresh_gauges(pool: asyncpg.Pool) -> list[store.PendingCount]:
    """Set consumer_pending_events and consumer_pending_oldest_age_seconds from the table."""
    async with db.connection(pool) as conn:
        counts = await store.pending_summary(conn)
    metrics.PENDING_EVENTS.clear()
    for count in counts:
        metrics.PENDING_EVENTS.labels(count.reason).set(count.events)
    metrics.PENDING_OLDEST_AGE.set(max((c.oldest_age_s for c in counts), default=0.0))
    return counts
