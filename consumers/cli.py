"""The consumer verbs of ``ingester``: consume, dlq list|replay, pending list|retry,
inbox prune.

Each returns an exit code: 0 on success, 1 on failure with one line on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from consumers import db, dlq, metrics
from consumers.decode import RawRecord
from consumers.dlq import DeadLetterSink
from consumers.errors import ConsumerError
from consumers.pending import store as pending_store
from consumers.pending.retry import PendingRetry, refresh_gauges
from consumers.registry import UnknownStream, build_handlers
from consumers.retention import prune_dead_letters, prune_inbox, prune_skipped
from consumers.service import run_service
from consumers.topic_reader import CHUNK_RECORDS, TopicReader, assign_all
from contract.headers import CE_ID, CE_SOURCE
from contract.topics import DLQ, topic_name
from core import logs
from core.kafka import StartOnSend, make_consumer, make_producer
from core.settings import ConfigError, Settings

log = logging.getLogger("consumers.cli")

# What a verb reports as a one-line failure instead of a traceback.
_FAILURES: tuple[type[BaseException], ...] = (
    ConsumerError,
    ConfigError,
    UnknownStream,
    LookupError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    kafka_errors.KafkaError,
)


def _fail(verb: str, exc: BaseException) -> int:
    name, text = type(exc).__name__, _one_line(str(exc))
    message = text if text.startswith(name) else f"{name}: {text}"
    print(f"ingester {verb}: {message}", file=sys.stderr)
    return 1


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


# -- consume ----------------------------------------------------------------------------


async def consume(
    settings: Settings,
    only: tuple[str, ...],
    *,
    consumer_options: Mapping[str, Any] | None = None,
) -> int:
    """Run the built-in consumers (``only`` these streams, or all) until SIGTERM/SIGINT;
    see :func:`consumers.service.run_service` for the shutdown order. ``consumer_options``
    override aiokafka consumer settings (e.g. session timeouts)."""
    logs.configure(settings.log_level)
    try:
        handlers = build_handlers(only)
        return await run_service(settings, handlers.values(), consumer_options=consumer_options)
    except _FAILURES as exc:
        log.critical("consumer stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        return _fail("consume", exc)


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- dlq ----------------------------------------------------------------------------------

DLQ_HEADER = "dlq_offset\tsource\terror_class\tattempts\treplays\tevent_id\tdead_at\terror"


def _dlq_consumer(settings: Settings, group: str | None) -> AIOKafkaConsumer:
    return make_consumer(settings, group_id=group, client_id="ingester-dlq", max_poll_records=None)


def _dlq_line(r: dlq.Described) -> str:
    fields = (r.dlq_offset, r.source, r.error_class, r.attempts, r.replays, r.event_id)
    return "\t".join(_one_line(str(f)) for f in (*fields, r.dead_at, r.error))


@dataclass(frozen=True, slots=True)
class DlqPass:
    """What one ``dlq list`` / ``dlq replay`` run did; ``read`` counts the records it
    fetched from the DLQ topic (at most one chunk past ``--limit``)."""

    shown: int = 0
    refused: int = 0
    read: int = 0


async def dlq_list(settings: Settings, limit: int | None = None) -> int:
    """Print the dead letters, one line each, the first ``limit`` of them if given."""
    try:
        await list_dead_letters(settings, limit)
    except _FAILURES as exc:
        return _fail("dlq list", exc)
    return 0


async def list_dead_letters(settings: Settings, limit: int | None = None) -> DlqPass:
    """Stream the DLQ topic to stdout, stopping at ``limit`` records."""
    topic = topic_name(settings.topic_prefix, DLQ)
    consumer = _dlq_consumer(settings, None)
    shown = 0
    try:
        await consumer.start()
        tps = await assign_all(consumer, topic)
        await consumer.seek_to_beginning(*tps)
        reader = TopicReader(consumer, tps, chunk=min(limit or CHUNK_RECORDS, CHUNK_RECORDS))
        async with aclosing(reader.chunks()) as chunks:
            async for chunk in chunks:
                lines = [
                    _dlq_line(dlq.describe(r))
                    for r in chunk[: None if limit is None else limit - shown]
                ]
                # One write per chunk: a line-buffered or unbuffered stdout would otherwise
                # cost a system call per dead letter.
                print("\n".join([DLQ_HEADER, *lines] if shown == 0 else lines))
                shown += len(lines)
                if limit is not None and shown >= limit:
                    break
    finally:
        await consumer.stop()
    if not shown:
        print(f"no dead letters in {topic}")
    elif limit is not None and shown >= limit:
        print(f"first {shown} dead letter(s) in {topic} (--limit {limit})")
    else:
        print(f"{shown} dead letter(s) in {topic}")
    return DlqPass(shown=shown, read=reader.records_read)


async def dlq_replay(settings: Settings, dry_run: bool, limit: int | None) -> int:
    """Re-publish dead letters not yet replayed to their source topic. Progress is kept by
    the consumer group ``{CONSUMER_GROUP}.dlq-replay``; a record replayed
    ``DLQ_MAX_REPLAYS`` times is refused (and passed over for good)."""
    try:
        done = await replay_dead_letters(settings, dry_run, limit)
    except _FAILURES as exc:
        return _fail("dlq replay", exc)
    verb = "would replay" if dry_run else "replayed"
    print(f"{verb} {done.shown} dead letter(s), refused {done.refused}")
    return 0


async def replay_dead_letters(settings: Settings, dry_run: bool, limit: int | None) -> DlqPass:
    """Stream the DLQ from the replay group's position, chunk by chunk: re-publish, wait for
    the acknowledgements, commit the chunk, stop at ``limit`` replayed records."""
    topic = topic_name(settings.topic_prefix, DLQ)
    consumer = _dlq_consumer(settings, f"{settings.consumer_group}.dlq-replay")
    producer = make_producer(settings)
    replayed = refused = 0
    try:
        await consumer.start()
        await producer.start()
        tps = await assign_all(consumer, topic)
        reader = TopicReader(consumer, tps, chunk=min(limit or CHUNK_RECORDS, CHUNK_RECORDS))
        async with aclosing(reader.chunks()) as chunks:
            async for chunk in chunks:
                room = None if limit is None else limit - replayed
                sent, passed, done = await _replay_chunk(settings, producer, chunk, dry_run, room)
                replayed += sent
                refused += passed
                if not dry_run and done:
                    await consumer.commit(done)
                if limit is not None and replayed >= limit:
                    break
    finally:
        await consumer.stop()
        await producer.stop()
    return DlqPass(shown=replayed, refused=refused, read=reader.records_read)


async def _replay_chunk(
    settings: Settings,
    producer: Any,
    chunk: Sequence[RawRecord],
    dry_run: bool,
    room: int | None,
) -> tuple[int, int, dict[TopicPartition, int]]:
    """Replay up to ``room`` records of one chunk; return (replayed, refused, offsets to
    commit). Records after the last one replayed stay for the next run."""
    replayed = refused = 0
    done: dict[TopicPartition, int] = {}
    pending: list[Any] = []
    for record in chunk:
        if room is not None and replayed >= room:
            break
        position = f"{record.partition}:{record.offset}"
        try:
            plan = dlq.plan_replay(record, settings.dlq_max_replays)
        except dlq.ReplayRefused as exc:
            refused += 1
            print(f"refused {position} ({record.header(CE_ID) or '-'}): {exc}")
        else:
            replayed += 1
            print(
                f"{'would replay' if dry_run else 'replay'} {position} "
                f"({record.header(CE_ID) or '-'}) -> {plan.topic} (replay {plan.count})"
            )
            if not dry_run:
                pending.append(
                    await producer.send(
                        plan.topic, value=plan.value, key=plan.key, headers=list(plan.headers)
                    )
                )
                metrics.DLQ_REPLAYED.labels(record.header(CE_SOURCE) or "?").inc()
        done[TopicPartition(record.topic, record.partition)] = record.offset + 1
    await asyncio.gather(*pending)
    return replayed, refused, done


# -- pending --------------------------------------------------------------------------------


async def pending_list(settings: Settings) -> int:
    """Print parked events by reason, with the oldest of each, then the expired ones that
    ``pending retry --expired`` can replay."""
    try:
        async with _pool(settings) as pool:
            counts = await refresh_gauges(pool)
            async with db.connection(pool) as conn:
                expired = await pending_store.expired_summary(conn)
    except _FAILURES as exc:
        return _fail("pending list", exc)
    if not counts:
        print("no pending events")
    else:
        print("reason\tevents\toldest_parked_at\toldest_age_s")
        for c in counts:
            print(f"{c.reason}\t{c.events}\t{c.oldest.isoformat()}\t{c.oldest_age_s:.0f}")
        print(f"{sum(c.events for c in counts)} pending event(s)")
    if expired:
        print("expired\tevents")
        for reason, events in expired:
            print(f"{reason}\t{events}")
        total = sum(n for _, n in expired)
        print(f"{total} expired event(s); `ingester pending retry --expired` replays them")
    return 0


async def pending_retry(settings: Settings, *, expired: bool = False) -> int:
    """Apply every parked event that can apply now; dead-letter those that never will.
    With ``expired``, the expired events go back to the table first."""
    try:
        return await _pending_retry(settings, expired)
    except _FAILURES as exc:
        return _fail("pending retry", exc)


async def _pending_retry(settings: Settings, expired: bool) -> int:
    handlers = build_handlers(())
    producer = StartOnSend(lambda: make_producer(settings))
    try:
        async with _pool(settings) as pool:
            dead_letters = DeadLetterSink.from_settings(settings, producer)
            retry = PendingRetry.from_settings(settings, pool, handlers, dead_letters)
            if expired:
                print(f"put back {await retry.revive_expired()} expired event(s)")
            report = await retry.run()
            async with db.connection(pool) as conn:
                left = await pending_store.summary(conn)
    finally:
        await producer.stop()
    totals = report.totals()
    print(
        f"applied {totals['applied']}, skipped {totals['skipped']}, dead {totals['dead']}, "
        f"still pending {sum(c.events for c in left)}"
    )
    return 0


async def inbox_prune(
    settings: Settings,
    older_than_days: int,
    *,
    skipped_days: int | None = None,
    dead_letter_days: int | None = None,
) -> int:
    """Delete inbox rows older than ``older_than_days``, skipped events older than
    ``SKIPPED_RETENTION_DAYS`` and logged dead letters older than
    ``DEAD_LETTER_RETENTION_DAYS``; print how many of each."""
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=older_than_days)
    skipped_cutoff = now - timedelta(days=skipped_days or settings.skipped_retention_days)
    dead_cutoff = now - timedelta(days=dead_letter_days or settings.dead_letter_retention_days)
    try:
        async with _pool(settings) as pool:
            deleted = await prune_inbox(pool, cutoff)
            skipped = await prune_skipped(pool, skipped_cutoff)
            dead = await prune_dead_letters(pool, dead_cutoff)
    except _FAILURES as exc:
        return _fail("inbox prune", exc)
    print(f"deleted {deleted} inbox rows processed before {cutoff.isoformat(timespec='seconds')}")
    print(f"deleted {skipped} skipped events before {skipped_cutoff.isoformat(timespec='seconds')}")
    print(f"deleted {dead} dead-letter log rows before {dead_cutoff.isoformat(timespec='seconds')}")
    return 0
