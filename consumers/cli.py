"""The consumer verbs of ``ingester``: consume, dlq list|replay, pending list|retry,
inbox prune.

Each returns an exit code: 0 on success, 1 on failure with one line on stderr.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors

from consumers import db, dlq, metrics, store
from consumers.errors import ConsumerError
from consumers.pending import PendingRetry, refresh_gauges
from consumers.registry import UnknownStream, build_handlers
from consumers.retention import prune_inbox
from consumers.service import run_service
from consumers.topic_reader import assign_all, read_to_end
from contract.records import CE_ID, CE_SOURCE
from core import logs
from core.kafka import make_consumer, make_producer
from core.settings import ConfigError, Settings
from core.topics import DLQ, topic_name

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
    print(f"ingester {verb}: {type(exc).__name__}: {exc}", file=sys.stderr)
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


def _dlq_consumer(settings: Settings, group: str | None) -> AIOKafkaConsumer:
    return make_consumer(settings, group_id=group, client_id="ingester-dlq", max_poll_records=None)


async def dlq_list(settings: Settings) -> int:
    """Print every record in the DLQ topic, one line each."""
    try:
        return await _dlq_list(settings)
    except _FAILURES as exc:
        return _fail("dlq list", exc)


async def _dlq_list(settings: Settings) -> int:
    topic = topic_name(settings.topic_prefix, DLQ)
    consumer = _dlq_consumer(settings, None)
    await consumer.start()
    try:
        tps = await assign_all(consumer, topic)
        await consumer.seek_to_beginning(*tps)
        rows = [dlq.describe(record) for record in await read_to_end(consumer, tps)]
    finally:
        await consumer.stop()
    if not rows:
        print(f"no dead letters in {topic}")
        return 0
    print("dlq_offset\tsource\terror_class\tattempts\treplays\tevent_id\tdead_at\terror")
    for r in rows:
        fields = (r.dlq_offset, r.source, r.error_class, r.attempts, r.replays, r.event_id)
        print("\t".join(_one_line(str(f)) for f in (*fields, r.dead_at, r.error)))
    print(f"{len(rows)} dead letter(s) in {topic}")
    return 0


async def dlq_replay(settings: Settings, dry_run: bool, limit: int | None) -> int:
    """Re-publish dead letters not yet replayed to their source topic. Progress is kept by
    the consumer group ``{CONSUMER_GROUP}.dlq-replay``; a record replayed
    ``DLQ_MAX_REPLAYS`` times is refused (and passed over for good)."""
    try:
        return await _dlq_replay(settings, dry_run, limit)
    except _FAILURES as exc:
        return _fail("dlq replay", exc)


async def _dlq_replay(settings: Settings, dry_run: bool, limit: int | None) -> int:
    topic = topic_name(settings.topic_prefix, DLQ)
    consumer = _dlq_consumer(settings, f"{settings.consumer_group}.dlq-replay")
    producer = make_producer(settings)
    await consumer.start()
    try:
        await producer.start()
        tps = await assign_all(consumer, topic)
        replayed, refused, done = await _replay_records(
            settings, consumer, producer, tps, dry_run, limit
        )
        if not dry_run and done:
            await consumer.commit(done)
    finally:
        await consumer.stop()
        await producer.stop()
    verb = "would replay" if dry_run else "replayed"
    print(f"{verb} {replayed} dead letter(s), refused {refused}")
    return 0


async def _replay_records(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    producer: Any,
    tps: Sequence[TopicPartition],
    dry_run: bool,
    limit: int | None,
) -> tuple[int, int, dict[TopicPartition, int]]:
    replayed = refused = 0
    done: dict[TopicPartition, int] = {}
    pending: list[Any] = []
    for record in await read_to_end(consumer, list(tps)):
        if limit is not None and replayed >= limit:
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
    """Print parked events by reason, with the oldest of each."""
    try:
        async with _pool(settings) as pool:
            counts = await refresh_gauges(pool)
    except _FAILURES as exc:
        return _fail("pending list", exc)
    if not counts:
        print("no pending events")
        return 0
    print("reason\tevents\toldest_parked_at\toldest_age_s")
    for c in counts:
        print(f"{c.reason}\t{c.events}\t{c.oldest.isoformat()}\t{c.oldest_age_s:.0f}")
    print(f"{sum(c.events for c in counts)} pending event(s)")
    return 0


async def pending_retry(settings: Settings) -> int:
    """Apply every parked event that can apply now; dead-letter those that never will."""
    try:
        return await _pending_retry(settings)
    except _FAILURES as exc:
        return _fail("pending retry", exc)


async def _pending_retry(settings: Settings) -> int:
    handlers = build_handlers(())
    producer: Any = None

    async def dead_letters(letters: Sequence[dlq.DeadLetter]) -> None:
        nonlocal producer
        if producer is None:
            producer = make_producer(settings)
            await producer.start()
        await dlq.publish(
            producer,
            topic_name(settings.topic_prefix, DLQ),
            letters,
            settings.consumer_group,
            datetime.now(UTC),
        )

    try:
        async with _pool(settings) as pool:
            report = await PendingRetry(
                pool,
                handlers,
                environment=settings.environment,
                topic_prefix=settings.topic_prefix,
                dead_letters=dead_letters,
            ).run()
            async with db.connection(pool) as conn:
                left = await store.pending_summary(conn)
    finally:
        if producer is not None:
            await producer.stop()
    totals = report.totals()
    print(
        f"applied {totals['applied']}, skipped {totals['skipped']}, dead {totals['dead']}, "
        f"still pending {sum(c.events for c in left)}"
    )
    return 0


async def inbox_prune(settings: Settings, older_than_days: int) -> int:
    """Delete inbox rows older than ``older_than_days`` and print how many."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    try:
        async with _pool(settings) as pool:
            deleted = await prune_inbox(pool, cutoff)
    except _FAILURES as exc:
        return _fail("inbox prune", exc)
    print(f"deleted {deleted} inbox rows processed before {cutoff.isoformat(timespec='seconds')}")
    return 0
