"""``ingester replay``: re-read a source's topic over a time window and apply its records
through the consumers' own handlers (docs/contract.md §9).

- **Bounded**: each partition is read from the offset of ``since`` (Kafka's
  offsets-for-times) up to the offset of ``until`` or, without it, the partition's end when
  the replay started; records whose timestamp lies outside the window are read, not
  applied. A broker that cannot look offsets up by time (the embedded one answers offset 0
  without a timestamp) is read from the start of each partition.
- **Safe**: by default the inbox makes an event applied before a no-op; ``reapply`` runs the
  handlers for every event (a rebuild into a fresh database).
- **Resumable**: the progress of each chunk commits with the chunk
  (:mod:`consumers.replay_progress`); the same window started again resumes an unfinished
  run, or starts over once the last one finished.

A record that cannot apply (poison) is counted as failed and left alone: the consumers
dead-lettered it when it first failed, and ``dlq replay`` is the way back for it. Nothing
here prints: progress is yielded as it goes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers import db
from consumers import replay_progress as progress
from consumers.apply import Handlers, Report, apply_events
from consumers.decode import Item, RawRecord, decode_all
from consumers.isolate import Progress, isolate
from consumers.registry import build_handlers
from consumers.replay_progress import Span
from consumers.topic_reader import TopicReader, assign_all, partition_ends
from consumers.types import Context
from contract.records import rfc3339
from contract.topics import topic_name
from core.kafka import make_consumer
from core.settings import Settings


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Window:
    """What to replay: the topic of ``stream``, records from ``since`` to ``until``."""

    stream: str
    since: datetime
    until: datetime | None = None
    reapply: bool = False

    @property
    def name(self) -> str:
        """The key of its progress rows: the same window resumes the same run."""
        until = rfc3339(self.until) if self.until else "end"
        mode = " reapply" if self.reapply else ""
        return f"{self.stream} {rfc3339(self.since)}..{until}{mode}"

    def holds(self, record: RawRecord) -> bool:
        stamp = record.timestamp_ms
        if stamp is None:
            return True
        return stamp >= _ms(self.since) and (self.until is None or stamp < _ms(self.until))


@dataclass(slots=True)
class ReplayProgress:
    """Where a replay is, kept up to date as it goes. ``outcomes`` counts the records read
    inside the window by what became of them: applied, duplicate (in the inbox already),
    skipped, pending (parked), failed (poison: not applied)."""

    window: Window
    total: int = 0  # records this run reads (what was left, when it resumed)
    read: int = 0
    outside: int = 0  # read, but outside the window
    outcomes: dict[str, int] = field(default_factory=dict)
    resumed: bool = False
    done: bool = False

    def count(self, outcome: str, events: int = 1) -> None:
        if events:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + events


async def plan(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition], window: Window
) -> dict[TopicPartition, Span]:
    """Each partition's span: from the offset of ``since`` to that of ``until`` or its end."""
    ends, _ = await partition_ends(consumer, tps)
    begins = await consumer.beginning_offsets(list(tps))
    since = await consumer.offsets_for_times({tp: _ms(window.since) for tp in tps})
    until: Mapping[TopicPartition, Any] = {}
    if window.until is not None:
        until = await consumer.offsets_for_times({tp: _ms(window.until) for tp in tps})
    spans = {}
    for tp in tps:
        end = ends[tp]
        if window.until is not None and tp in until:
            end = min(end, _offset_at(until[tp], _ms(window.until), end))
        # No record at or after `since`: nothing to read.
        start = end if since[tp] is None else _offset_at(since[tp], _ms(window.since), begins[tp])
        spans[tp] = Span(min(start, end), end)
    return spans


def _offset_at(found: Any, target_ms: int, otherwise: int) -> int:
    """The offset an offsets-for-times answer gives, or ``otherwise``: no record at or after
    the time (None), or no real answer (a timestamp before the time asked)."""
    stamp = getattr(found, "timestamp", None)
    if isinstance(stamp, int) and stamp >= target_ms:
        return int(found.offset)
    return otherwise


async def replay(
    settings: Settings, window: Window, *, pool: asyncpg.Pool | None = None
) -> AsyncGenerator[ReplayProgress, None]:
    """Replay ``window``, yielding the progress once planned and after every chunk; the
    last one yielded has ``done``. Database and broker failures propagate (the progress
    committed so far stays: the same call resumes)."""
    handlers = build_handlers([window.stream])
    own_pool = pool is None
    pool = pool or await db.create_pool(settings)
    consumer = make_consumer(settings, group_id=None, client_id="ingester-replay")
    try:
        await consumer.start()
        tps = await assign_all(consumer, topic_name(settings.topic_prefix, window.stream))
        async with db.connection(pool) as conn:
            spans = await progress.load(conn, window.name)
        state = ReplayProgress(window)
        state.resumed = progress.unfinished(spans) and set(spans) == set(tps)
        if not state.resumed:
            spans = await plan(consumer, tps, window)
            async with db.transaction(pool) as conn:
                await progress.start(conn, window.name, spans)
        state.total = sum(span.left for span in spans.values())
        yield state
        for tp in tps:
            consumer.seek(tp, spans[tp].start)
        reader = TopicReader(consumer, tps, ends={tp: spans[tp].end for tp in tps})
        async with aclosing(reader.chunks()) as chunks:
            async for chunk in chunks:
                await _apply_chunk(settings, pool, handlers, chunk, state)
                yield state
        state.done = True
        yield state
    finally:
        await consumer.stop()
        if own_pool:
            await pool.close()


async def _apply_chunk(
    settings: Settings,
    pool: asyncpg.Pool,
    handlers: Handlers,
    chunk: Sequence[RawRecord],
    state: ReplayProgress,
) -> None:
    """Apply one chunk (one partition, in offset order), isolating poison; each committed
    slice moves the partition's progress past itself in its own transaction."""
    window = state.window
    tp = TopicPartition(chunk[0].topic, chunk[0].partition)
    inside = [r for r in chunk if window.holds(r)]
    state.read += len(chunk)
    state.outside += len(chunk) - len(inside)
    items = decode_all(inside)
    state.count("failed", sum(1 for i in items if i.event is None))

    async def apply(slice_: Sequence[Item]) -> Report:
        ctx = Context(environment=settings.environment, now=datetime.now(UTC))
        events = [i.event for i in slice_ if i.event is not None]
        async with db.transaction(pool, settings.db_transaction_timeout_s) as conn:
            report = await apply_events(
                conn,
                handlers,
                events,
                ctx,
                backoff_max_s=settings.pending_backoff_max_s,
                dedupe=not window.reapply,
            )
            await progress.advance(conn, window.name, tp, slice_[-1].raw.offset + 1)
        return report

    done: Progress[Item, Report] = Progress()
    await isolate(
        [i for i in items if i.event is not None],
        apply,
        key=lambda i: i.raw.offset,
        event_id=lambda i: i.event.id if i.event else None,
        progress=done,
    )
    for report in done.results:
        for settled in report.settled:
            state.count(settled.disposition.value)
    state.count("failed", len(done.poisoned))
    async with db.transaction(pool) as conn:
        await progress.advance(conn, window.name, tp, chunk[-1].offset + 1)
