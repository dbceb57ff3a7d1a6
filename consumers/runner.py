"""The consumer loop, spelled out (docs/contract.md §6).

    fetch a bounded batch -> decode -> in one transaction: inbox insert, apply the new events,
    park pending, record skipped -> commit the transaction -> dead-letter poison -> commit the
    batch's offsets -> repeat

A crash anywhere in between redelivers the batch; the inbox makes that change nothing.
Offsets travel with the records until the commit (the batch's ``committable``).

Failure classes (``consumers.classify``):
- an outage (database or broker) pauses fetching, retries the same step with capped
  exponential backoff and commits nothing until it succeeds; nothing is dead-lettered;
- poison (undecodable, or deterministic failure) is isolated by retrying the batch in halves
  and dead-lettered; the rest of the batch commits. If more than ``POISON_MAX_SHARE`` of a
  batch is poison the runner stops instead of draining the topic into the DLQ;
- anything else (a broken deployment) propagates and stops the runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from consumers import db, dlq, metrics, store
from consumers.apply import Report, apply_in_transaction
from consumers.backoff import Backoff
from consumers.classify import Failure, classify
from consumers.decode import Item, RawRecord, committable, decode_all
from consumers.errors import ConsumerError
from consumers.isolate import Progress, isolate
from consumers.observe import BatchReport, observe_batch
from consumers.outage import Outages
from consumers.types import Context, Handler
from contract.records import CE_SOURCE
from core.settings import Settings
from core.topics import DLQ, topic_name

log = logging.getLogger("consumers.runner")


class PoisonFlood(ConsumerError):
    """Too much of one batch is poison: more likely a broken deployment than bad records."""

    def __init__(self, dead: int, size: int, share: float) -> None:
        super().__init__(
            f"{dead} of {size} records in one batch are poison (more than {share:.0%}); "
            "stopping instead of dead-lettering them"
        )


@dataclass(frozen=True, slots=True)
class Hooks:
    """Seams for tests. ``before_commit`` runs after the batch's database transaction(s)
    and dead letters, before its offsets are committed."""

    before_commit: Callable[[Sequence[RawRecord]], Awaitable[None]] | None = None


DEFAULT_BACKOFF = Backoff()
NO_HOOKS = Hooks()


class Runner:
    """Applies the records of ``consumer``'s topics with ``handlers`` (keyed by ce_source).

    The caller builds and starts the clients (``pool``, a started aiokafka ``consumer``
    subscribed to the topics, a started ``producer`` for the DLQ) and closes them after
    :meth:`run` returns. ``scope`` keeps this runtime's inbox apart from the ingester's own
    when an internal team applies the same topics with its own handlers.
    """

    def __init__(
        self,
        settings: Settings,
        handlers: Mapping[str, Handler] | Iterable[Handler],
        pool: asyncpg.Pool,
        consumer: Any,
        producer: Any,
        *,
        scope: str = "",
        backoff: Backoff = DEFAULT_BACKOFF,
        hooks: Hooks = NO_HOOKS,
        poison_min: int = 3,
        io_timeout_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.handlers: dict[str, Handler] = (
            dict(handlers) if isinstance(handlers, Mapping) else {h.source: h for h in handlers}
        )
        self.pool = pool
        self.consumer = consumer
        self.producer = producer
        self.scope = scope
        self.backoff = backoff
        self.hooks = hooks
        self.poison_min = poison_min
        self.io_timeout_s = io_timeout_s
        self.dlq_topic = topic_name(settings.topic_prefix, DLQ)
        self.outages = Outages(consumer, backoff)
        self._committed: dict[TopicPartition, int] = {}

    # -- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set. A batch in flight when it is set gets
        ``shutdown_deadline_s`` to finish (its offsets are committed); past the deadline it
        is abandoned uncommitted and will be redelivered."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                cycle = asyncio.ensure_future(self._cycle())
                await asyncio.wait({cycle, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not cycle.done():
                    try:
                        await asyncio.wait_for(cycle, self.settings.shutdown_deadline_s)
                    except TimeoutError:
                        log.warning(
                            "batch abandoned at shutdown; it will be redelivered",
                            extra={"deadline_s": self.settings.shutdown_deadline_s},
                        )
                        return
                cycle.result()
        finally:
            stopping.cancel()

    async def _cycle(self) -> None:
        await self.step()

    async def step(self) -> BatchReport | None:
        """Fetch one batch and process it; None when nothing arrived."""
        records = await self.fetch()
        if not records:
            self._update_lag()
            return None
        return await self.process(records)

    async def fetch(self) -> list[RawRecord]:
        """One bounded batch from the consumer: up to ``CONSUMER_BATCH_MAX`` records,
        waiting up to ``CONSUMER_BATCH_WAIT_MS`` for the first."""
        try:
            batches = await self.consumer.getmany(
                timeout_ms=self.settings.consumer_batch_wait_ms,
                max_records=self.settings.consumer_batch_max,
            )
        except kafka_errors.KafkaError as exc:
            if classify(exc) is not Failure.RETRYABLE:
                raise
            log.warning("fetch failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(self.backoff.delay(0))
            return []
        return [RawRecord.of(r) for records in batches.values() for r in records]

    async def process(self, records: Sequence[RawRecord]) -> BatchReport:
        """Apply a fetched batch, dead-letter its poison and commit its offsets."""
        items = decode_all(records)
        dead = [
            dlq.DeadLetter(
                i.raw, i.error, 1, source=i.raw.header(CE_SOURCE), event_id=i.error.event_id
            )
            for i in items
            if i.error is not None
        ]
        progress: Progress[Item, Report] = Progress()
        decoded = [i for i in items if i.event is not None]
        await self.outages.retrying("apply", lambda: self._isolate(decoded, progress))
        dead += [
            dlq.DeadLetter(
                p.item.raw,
                p.error,
                p.attempts,
                source=p.item.event.source if p.item.event else None,
                event_id=p.item.event.id if p.item.event else None,
            )
            for p in progress.poisoned
        ]
        share = self.settings.poison_max_share
        if len(dead) >= self.poison_min and len(dead) > share * len(items):
            log.critical(
                "poison flood: stopping",
                extra={"dead": len(dead), "batch": len(items), "max_share": share},
            )
            raise PoisonFlood(len(dead), len(items), share)
        if dead:
            await self.outages.retrying("dead-letter publish", lambda: self._publish_dead(dead))
            await self.outages.retrying("dead-letter log", lambda: self._log_dead(dead))
        if self.hooks.before_commit is not None:
            await self.hooks.before_commit(records)
        await self.outages.retrying("offset commit", lambda: self._commit(committable(records)))
        return observe_batch(items, progress.results, dead)

    async def _isolate(self, items: Sequence[Item], progress: Progress[Item, Report]) -> None:
        await isolate(
            items,
            self._apply,
            key=lambda i: (i.raw.topic, i.raw.partition, i.raw.offset),
            event_id=lambda i: i.event.id if i.event else None,
            progress=progress,
        )

    async def _apply(self, items: Sequence[Item]) -> Report:
        ctx = Context(environment=self.settings.environment, now=datetime.now(UTC))
        events = [i.event for i in items if i.event is not None]
        return await apply_in_transaction(self.pool, self.handlers, events, ctx, scope=self.scope)

    # -- dead letters and commits ---------------------------------------------------------

    async def _publish_dead(self, letters: Sequence[dlq.DeadLetter]) -> None:
        await asyncio.wait_for(
            dlq.publish(
                self.producer,
                self.dlq_topic,
                letters,
                self.settings.consumer_group,
                datetime.now(UTC),
            ),
            self.io_timeout_s,
        )

    async def _log_dead(self, letters: Sequence[dlq.DeadLetter]) -> None:
        async with db.transaction(self.pool) as conn:
            await store.log_dead_letters(conn, [dlq.log_row(letter) for letter in letters])

    async def _commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        assigned = self.consumer.assignment()
        owned = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
        mine = {tp: o for tp, o in owned.items() if tp in assigned}
        if len(mine) < len(owned):
            log.warning("partitions revoked mid-batch; their new owner redelivers them")
        if not mine:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(mine), self.io_timeout_s)
        except kafka_errors.CommitFailedError as exc:
            # The group rebalanced: the batch is in the database and the inbox, and the new
            # owner of these partitions will find every record a duplicate.
            log.warning("offset commit rejected after a rebalance", extra={"error": str(exc)})
            return
        self._committed.update(mine)
        self._update_lag()

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            committed = self._committed.get(tp)
            if highwater is None or committed is None:
                continue
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - committed))

    @property
    def paused(self) -> bool:
        """True while an outage holds the batch in hand and fetching is paused."""
        return self.outages.paused

    @property
    def ready(self) -> bool:
        return bool(self.consumer.assignment())
