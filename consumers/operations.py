"""The consumer side of the operator verbs (``ingester dlq``, ``pending``, ``inbox``): stream
and replay the DLQ topic, summarise and retry parked events, prune the bookkeeping tables.

Nothing here prints or exits: each function returns data, or yields it as it goes so the
command can show a large DLQ while it is being read; ``ingester/`` turns it into lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers import db, dlq, metrics
from consumers.decode import RawRecord
from consumers.dlq import DeadLetterSink
from consumers.pending import browse
from consumers.pending.retry import PendingRetry, refresh_gauges
from consumers.registry import build_handlers
from consumers.retention import prune_dead_letters, prune_inbox, prune_skipped
from consumers.topic_reader import CHUNK_RECORDS, TopicReader, assign_all
from contract.headers import CE_ID, CE_SOURCE
from contract.topics import DLQ, topic_name
from core.kafka import StartOnSend, make_consumer, make_producer
from core.settings import Settings


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


# -- dlq ----------------------------------------------------------------------------------


def dlq_topic(settings: Settings) -> str:
    return topic_name(settings.topic_prefix, DLQ)


def _dlq_consumer(settings: Settings, group: str | None) -> AIOKafkaConsumer:
    return make_consumer(settings, group_id=group, client_id="ingester-dlq", max_poll_records=None)


@dataclass(slots=True)
class DlqPass:
    """What one ``dlq list`` / ``dlq replay`` run did so far, kept up to date while its
    records are yielded; ``read`` counts the records fetched from the DLQ topic (at most one
    chunk past ``--limit``)."""

    shown: int = 0
    refused: int = 0
    read: int = 0


DlqCursor = tuple[int, int]  # (partition, offset) of a record in the DLQ topic


async def stream_dead_letters(
    settings: Settings,
    *,
    after: DlqCursor | None = None,
    chunk: int = CHUNK_RECORDS,
    done: DlqPass | None = None,
) -> AsyncGenerator[list[RawRecord], None]:
    """The DLQ topic's records, partition by partition in offset order, one chunk (at most
    ``chunk``) at a time, up to the end each partition had when reading began: from the
    start, or from the record after ``after``. ``done.read`` counts the records fetched."""
    consumer = _dlq_consumer(settings, None)
    try:
        await consumer.start()
        tps = await assign_all(consumer, dlq_topic(settings))
        if after is None:
            await consumer.seek_to_beginning(*tps)
        else:
            tps = [tp for tp in tps if tp.partition >= after[0]]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition == after[0]:
                    consumer.seek(tp, after[1] + 1)
                else:
                    await consumer.seek_to_beginning(tp)
        reader = TopicReader(consumer, tps, chunk=chunk)
        async with aclosing(reader.chunks()) as chunks:
            async for records in chunks:
                if done is not None:
                    done.read = reader.records_read
                yield records
    finally:
        await consumer.stop()


async def list_dead_letters(
    settings: Settings, limit: int | None = None, done: DlqPass | None = None
) -> AsyncGenerator[list[dlq.Described], None]:
    """The dead letters from the start of the DLQ topic, described, one chunk (at most
    :data:`CHUNK_RECORDS`) at a time, stopping after ``limit`` of them. ``done`` is kept
    up to date as the chunks are yielded."""
    done = DlqPass() if done is None else done
    chunk = min(limit or CHUNK_RECORDS, CHUNK_RECORDS)
    async with aclosing(stream_dead_letters(settings, chunk=chunk, done=done)) as chunks:
        async for records in chunks:
            room = None if limit is None else limit - done.shown
            described = [dlq.describe(r) for r in records[:room]]
            done.shown += len(described)
            yield described
            if limit is not None and done.shown >= limit:
                break


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay did (or, dry, would do) with one dead letter: re-published it as
    ``plan``, or refused it (``plan`` is None) for ``refusal``."""

    position: str  # partition:offset in the DLQ topic
    event_id: str  # "-" when the record has none
    plan: dlq.Replay | None
    refusal: str = ""


async def replay_dead_letters(
    settings: Settings, dry_run: bool, limit: int | None, done: DlqPass | None = None
) -> AsyncGenerator[Replayed, None]:
    """Stream the DLQ from the replay group's position, chunk by chunk: re-publish, wait for
    the acknowledgements, commit the chunk, stop at ``limit`` replayed records. Progress is
    kept by the consumer group ``{CONSUMER_GROUP}.dlq-replay``; a record replayed
    ``DLQ_MAX_REPLAYS`` times is refused (and passed over for good). Each record's outcome
    is yielded before it is sent; ``done`` is kept up to date."""
    done = DlqPass() if done is None else done
    consumer = _dlq_consumer(settings, f"{settings.consumer_group}.dlq-replay")
    producer = make_producer(settings)
    try:
        await consumer.start()
        await producer.start()
        tps = await assign_all(consumer, dlq_topic(settings))
        reader = TopicReader(consumer, tps, chunk=min(limit or CHUNK_RECORDS, CHUNK_RECORDS))
        async with aclosing(reader.chunks()) as chunks:
            async for chunk in chunks:
                done.read = reader.records_read
                room = None if limit is None else limit - done.shown
                offsets: dict[TopicPartition, int] = {}
                async with aclosing(
                    replay_records(settings, producer, chunk, dry_run, room, done, offsets)
                ) as outcomes:
                    async for outcome in outcomes:
                        yield outcome
                if not dry_run and offsets:
                    await consumer.commit(offsets)
                if limit is not None and done.shown >= limit:
                    break
    finally:
        await consumer.stop()
        await producer.stop()


async def replay_records(
    settings: Settings,
    producer: Any,
    chunk: Sequence[RawRecord],
    dry_run: bool,
    room: int | None,
    done: DlqPass,
    offsets: dict[TopicPartition, int],
) -> AsyncGenerator[Replayed, None]:
    """Replay up to ``room`` of ``chunk``'s records (re-published through ``producer``),
    yielding each outcome, and fill ``offsets`` with what to commit once all were
    acknowledged. Records after the last one replayed stay for the next run."""
    replayed = 0
    pending: list[Any] = []
    for record in chunk:
        if room is not None and replayed >= room:
            break
        position = f"{record.partition}:{record.offset}"
        event_id = record.header(CE_ID) or "-"
        try:
            plan = dlq.plan_replay(record, settings.dlq_max_replays)
        except dlq.ReplayRefused as exc:
            done.refused += 1
            yield Replayed(position, event_id, None, str(exc))
        else:
            replayed += 1
            done.shown += 1
            yield Replayed(position, event_id, plan)
            if not dry_run:
                pending.append(
                    await producer.send(
                        plan.topic, value=plan.value, key=plan.key, headers=list(plan.headers)
                    )
                )
                metrics.DLQ_REPLAYED.labels(record.header(CE_SOURCE) or "?").inc()
        offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
    await asyncio.gather(*pending)


# -- pending --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingOverview:
    """Parked events by reason (with the oldest of each), and the expired ones by reason
    that ``pending retry --expired`` can put back."""

    counts: list[browse.PendingCount]
    expired: list[tuple[str, int]]


async def pending_overview(settings: Settings) -> PendingOverview:
    async with _pool(settings) as pool:
        counts = await refresh_gauges(pool)
        async with db.connection(pool) as conn:
            expired = await browse.expired_summary(conn)
    return PendingOverview(counts, expired)


@dataclass(frozen=True, slots=True)
class PendingRetried:
    """One on-demand retry: the expired events put back first (None unless asked), the
    outcomes by kind (applied, skipped, pending, dead) and the events still parked."""

    revived: int | None
    totals: dict[str, int]
    still_pending: int


async def retry_pending(settings: Settings, *, expired: bool = False) -> PendingRetried:
    """Apply every parked event that can apply now; dead-letter those that never will.
    With ``expired``, the expired events go back to the table first."""
    handlers = build_handlers(())
    producer = StartOnSend(lambda: make_producer(settings))
    revived: int | None = None
    try:
        async with _pool(settings) as pool:
            dead_letters = DeadLetterSink.from_settings(settings, producer)
            retry = PendingRetry.from_settings(settings, pool, handlers, dead_letters)
            if expired:
                revived = await retry.revive_expired()
            report = await retry.run()
            async with db.connection(pool) as conn:
                left = await browse.summary(conn)
    finally:
        await producer.stop()
    return PendingRetried(revived, report.totals(), sum(c.events for c in left))


# -- inbox ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pruned:
    """Rows deleted from each bookkeeping table, and the time each was pruned before."""

    inbox: int
    inbox_before: datetime
    skipped: int
    skipped_before: datetime
    dead_letters: int
    dead_letters_before: datetime


async def prune(settings: Settings, older_than_days: int) -> Pruned:
    """Delete inbox rows older than ``older_than_days``, skipped events older than
    ``SKIPPED_RETENTION_DAYS`` and logged dead letters older than
    ``DEAD_LETTER_RETENTION_DAYS``."""
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=older_than_days)
    skipped_cutoff = now - timedelta(days=settings.skipped_retention_days)
    dead_cutoff = now - timedelta(days=settings.dead_letter_retention_days)
    async with _pool(settings) as pool:
        deleted = await prune_inbox(pool, cutoff)
        skipped = await prune_skipped(pool, skipped_cutoff)
        dead = await prune_dead_letters(pool, dead_cutoff)
    return Pruned(deleted, cutoff, skipped, skipped_cutoff, dead, dead_cutoff)
