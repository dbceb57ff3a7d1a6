"""The consumer loop, spelled out (docs/contract.md §6).

    fetch a bounded batch -> decode -> one transaction per source of the batch, run
    concurrently: inbox insert, apply the new events, park pending, record skipped ->
    dead-letter poison -> commit the batch's offsets once every transaction committed ->
    repeat

While a batch's transactions run, the next batch is fetched and decoded (one prefetch at a
time, never while an outage holds the batch). A crash anywhere in between redelivers the
batch; the inbox makes that change nothing. Offsets travel with the records until the
commit (the batch's ``committable``). Records of one key share a partition of one source's
topic, and a source's records are applied in offset order in one transaction, so per-key
order holds.

Failure classes (``consumers.classify``):
- an outage (database or broker, including a call that outlived its timeout) pauses
  fetching, retries the same step with capped exponential backoff and commits nothing until
  it succeeds; nothing is dead-lettered;
- poison (undecodable, or deterministic failure) is isolated by retrying the batch in halves
  and dead-lettered; the rest of the batch commits. If the rolling window of recent records
  (``consumers.flood``) turns into a flood, the runner holds instead of draining the topic
  into the DLQ: nothing of the batch is committed, fetching stays paused, /readyz fails;
- anything else (a bug, a broken deployment) stops the runner without committing, with the
  traceback logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import errors as kafka_errors
from opentelemetry import trace
from opentelemetry.trace import Tracer

from consumers import db, dlq, metrics, store
from consumers.apply import Report, apply_in_transaction
from consumers.backoff import Backoff
from consumers.classify import Failure, classify
from consumers.decode import Item, RawRecord, committable, decode_all
from consumers.flood import FloodGuard, PoisonFlood
from consumers.isolate import Progress, isolate
from consumers.liveness import Liveness
from consumers.observe import BatchReport, observe_batch
from consumers.offsets import Offsets
from consumers.outage import Outages
from consumers.policies import ApplyPolicy, FetchPolicy, FloodPolicy, Timeouts
from consumers.tracing import batch_span
from consumers.types import Context, Handler
from contract.headers import CE_SOURCE

log = logging.getLogger("consumers.runner")


__all__ = ["NO_HOOKS", "Hooks", "PoisonFlood", "Runner"]

Batch = tuple[list[RawRecord], list[Item]]  # fetched records, and what decoding made of them
GroupKey = str  # ce_source: one transaction (or isolated slices) per source of a batch


@dataclass(frozen=True, slots=True)
class Hooks:
    """Seams for tests. ``before_commit`` runs after the batch's database transaction(s)
    and dead letters, before its offsets are committed."""

    before_commit: Callable[[Sequence[RawRecord]], Awaitable[None]] | None = None


DEFAULT_BACKOFF = Backoff()
RACE_RETRIES = 3  # immediate retries of a deadlocked transaction before the outage path
NO_HOOKS = Hooks()


class Runner:
    """Applies the records of ``consumer``'s topics with ``handlers`` (keyed by ce_source).

    The caller builds and starts the clients (``pool``, a started aiokafka ``consumer``
    subscribed to the topics, the producer of ``dead_letters``) and closes them after
    :meth:`run` returns. ``scope`` keeps this runtime's inbox apart from the ingester's own
    when an internal team applies the same topics with its own handlers.
    """

    def __init__(
        self,
        handlers: Mapping[str, Handler] | Iterable[Handler],
        pool: asyncpg.Pool,
        consumer: Any,
        dead_letters: dlq.DeadLetterSink,
        *,
        fetch: FetchPolicy,
        apply: ApplyPolicy,
        timeouts: Timeouts,
        flood: FloodPolicy,
        scope: str = "",
        backoff: Backoff = DEFAULT_BACKOFF,
        hooks: Hooks = NO_HOOKS,
        tracer: Tracer | None = None,
    ) -> None:
        self.fetch_policy = fetch
        self.apply_policy = apply
        self.timeouts = timeouts
        self.handlers: dict[str, Handler] = (
            dict(handlers) if isinstance(handlers, Mapping) else {h.source: h for h in handlers}
        )
        self.pool = pool
        self.consumer = consumer
        self.dead_letters = dead_letters
        self.scope = scope
        self.backoff = backoff
        self.hooks = hooks
        # A span per batch (consumers.tracing); without a tracer, the global one (no-op
        # unless installed), which still puts a batch of one trace in that trace.
        self.tracer = tracer or trace.get_tracer("consumers")
        self.liveness = Liveness(timeouts.liveness_stall_s)
        self.offsets = Offsets(consumer, timeouts.io_s, self.liveness)
        self.outages = Outages(
            consumer,
            backoff,
            io_timeout_s=timeouts.io_s,
            on_attempt=self.liveness.beat,
            quiesce=self._quiesce,
            on_idle=self.offsets.refresh_lag,
        )
        self.flood = FloodGuard(flood)
        self.held: str | None = None  # why the runner holds (a poison flood), if it does
        self._prefetch: asyncio.Task[Batch] | None = None

    # -- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set. A batch in flight when it is set gets
        ``timeouts.shutdown_s`` to finish (its offsets are committed); past the deadline it
        is abandoned uncommitted and will be redelivered."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await self._loop(stop, stopping)
        except PoisonFlood as exc:
            await self._hold(exc, stop)
        except Exception as exc:
            log.critical(
                "consumer stopped: the batch in hand is not committed",
                extra={"error": f"{type(exc).__name__}: {exc}"},
                exc_info=True,
            )
            raise
        finally:
            stopping.cancel()
            await self.aclose()

    async def _loop(self, stop: asyncio.Event, stopping: asyncio.Future[Any]) -> None:
        while not stop.is_set():
            cycle = asyncio.ensure_future(self.step())
            await asyncio.wait({cycle, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not cycle.done():
                try:
                    await asyncio.wait_for(cycle, self.timeouts.shutdown_s)
                except TimeoutError:
                    log.warning(
                        "batch abandoned at shutdown; it will be redelivered",
                        extra={"deadline_s": self.timeouts.shutdown_s},
                    )
                    return
            cycle.result()

    async def _hold(self, flood: PoisonFlood, stop: asyncio.Event) -> None:
        """A poison flood: keep the group membership and the partitions, fetch nothing,
        commit nothing, report not ready, until stopped. Restarting would only meet the same
        records again (they are not committed), so the process neither exits nor fails its
        liveness; a fixed deployment (or a higher POISON_MAX_SHARE) resumes from the
        committed offsets."""
        self.held = str(flood)
        metrics.POISON_FLOOD.set(1)
        log.critical(
            "poison flood: holding; nothing of the batch is committed or dead-lettered",
            extra={"error": str(flood), "dead": flood.dead, "records": flood.size},
        )
        await self.outages.pause()
        while not stop.is_set():
            self.liveness.beat()
            await self.outages.idle(1.0)

    async def aclose(self) -> None:
        """Drop a prefetched batch (not committed: it is redelivered)."""
        task, self._prefetch = self._prefetch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def step(self) -> BatchReport | None:
        """Take the next batch (prefetched, or fetched now) and process it, fetching the one
        after it meanwhile; None when nothing arrived."""
        records, items = await self._next()
        if not records:
            self.offsets.update_lag()
            self.liveness.beat()
            return None
        return await self._process(records, items, prefetch=True)

    async def _next(self) -> Batch:
        task, self._prefetch = self._prefetch, None
        if task is not None:
            return await task
        return await self._fetch_decoded()

    async def _fetch_decoded(self) -> Batch:
        records = await self.fetch()
        return records, decode_all(records)

    async def _quiesce(self) -> None:
        """Let a prefetch in flight finish (its batch is kept for the next step) so that no
        other fetch runs while an outage polls the paused consumer."""
        if self._prefetch is not None:
            await asyncio.wait({self._prefetch})

    async def fetch(self) -> list[RawRecord]:
        """One bounded batch from the consumer: up to ``CONSUMER_BATCH_MAX`` records,
        waiting up to ``CONSUMER_BATCH_WAIT_MS`` for the first."""
        wait_ms = self.fetch_policy.wait_ms
        try:
            async with asyncio.timeout(wait_ms / 1000 + self.timeouts.io_s):
                batches = await self.consumer.getmany(
                    timeout_ms=wait_ms, max_records=self.fetch_policy.max_records
                )
        except (kafka_errors.KafkaError, TimeoutError) as exc:
            if classify(exc) is not Failure.RETRYABLE:
                raise
            log.warning("fetch failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(self.backoff.delay(0))
            return []
        return [RawRecord.of(r) for records in batches.values() for r in records]

    async def process(self, records: Sequence[RawRecord]) -> BatchReport:
        """Apply a fetched batch, dead-letter its poison and commit its offsets."""
        return await self._process(records, decode_all(records), prefetch=False)

    async def _process(
        self, records: Sequence[RawRecord], items: Sequence[Item], *, prefetch: bool
    ) -> BatchReport:
        self.liveness.batch_in_hand = True
        if prefetch and self._prefetch is None and not self.outages.paused:
            self._prefetch = asyncio.create_task(self._fetch_decoded())
        with batch_span(self.tracer, records):
            return await self._apply_batch(records, items)

    async def _apply_batch(
        self, records: Sequence[RawRecord], items: Sequence[Item]
    ) -> BatchReport:
        dead = [
            dlq.DeadLetter(
                i.raw, i.error, 1, source=i.raw.header(CE_SOURCE), event_id=i.error.event_id
            )
            for i in items
            if i.error is not None
        ]
        groups = _groups(i for i in items if i.event is not None)
        progress: dict[GroupKey, Progress[Item, Report]] = {g: Progress() for g in groups}
        await self.outages.retrying("apply", lambda: self._apply_groups(groups, progress))
        poisoned = sorted(
            (p for g in progress.values() for p in g.poisoned),
            key=lambda p: (p.item.raw.topic, p.item.raw.partition, p.item.raw.offset),
        )
        dead += [
            dlq.DeadLetter(
                p.item.raw,
                p.error,
                p.attempts,
                source=p.item.event.source if p.item.event else None,
                event_id=p.item.event.id if p.item.event else None,
            )
            for p in poisoned
        ]
        # A record `dlq replay` sent back that fails again was poison already: an operator
        # replaying a DLQ that still holds bad records is not a broken deployment.
        again = sum(1 for d in dead if dlq.replay_count(d.raw) > 0)
        self.flood.check(time.monotonic(), len(items) - again, len(dead) - again)
        if dead:
            await self.outages.retrying(
                "dead-letter publish", lambda: self.dead_letters.publish(dead)
            )
            await self.outages.retrying("dead-letter log", lambda: self._log_dead(dead))
        if self.hooks.before_commit is not None:
            await self.hooks.before_commit(records)
        await self.outages.retrying(
            "offset commit", lambda: self.offsets.commit(committable(records))
        )
        self.liveness.batch_in_hand = False
        self.liveness.beat()
        results = [r for g in progress.values() for r in g.results]
        return observe_batch(items, results, dead)

    async def _apply_groups(
        self,
        groups: Mapping[GroupKey, Sequence[Item]],
        progress: Mapping[GroupKey, Progress[Item, Report]],
    ) -> None:
        """Each group in its own transaction(s), at most CONSUMER_APPLY_CONCURRENCY at once.
        Every group runs to its end even when another fails, so a retry redoes only what
        did not commit; then the worst failure (a bug over an outage) is raised."""
        gate = asyncio.Semaphore(self.apply_policy.concurrency)

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
            raise _worst(failures)

    async def _isolate(self, items: Sequence[Item], progress: Progress[Item, Report]) -> None:
        await isolate(
            items,
            self._apply,
            key=lambda i: (i.raw.topic, i.raw.partition, i.raw.offset),
            event_id=lambda i: i.event.id if i.event else None,
            progress=progress,
        )

    async def _apply(self, items: Sequence[Item]) -> Report:
        ctx = Context(environment=self.apply_policy.environment, now=datetime.now(UTC))
        events = [i.event for i in items if i.event is not None]
        return await apply_in_transaction(
            self.pool,
            self.handlers,
            events,
            ctx,
            scope=self.scope,
            timeout_s=self.apply_policy.transaction_timeout_s,
            backoff_max_s=self.apply_policy.backoff_max_s,
        )

    # -- dead letters and commits ---------------------------------------------------------

    async def _log_dead(self, letters: Sequence[dlq.DeadLetter]) -> None:
        async with db.transaction(self.pool, self.apply_policy.transaction_timeout_s) as conn:
            await store.log_dead_letters(conn, [dlq.log_row(letter) for letter in letters])

    @property
    def paused(self) -> bool:
        """True while an outage holds the batch in hand and fetching is paused."""
        return self.outages.paused

    @property
    def ready(self) -> bool:
        """Holds partitions and is not holding after a poison flood."""
        return bool(self.consumer.assignment()) and self.held is None


def _groups(items: Iterable[Item]) -> dict[GroupKey, list[Item]]:
    """Items by source, each group in offset order. Not by partition as well: a handler
    call costs a handful of statements and a commit whatever its size, so per-partition
    transactions would multiply them (six partitions: six times the statements and commits
    for the same events) on the same two cores."""
    groups: dict[GroupKey, list[Item]] = {}
    for item in items:
        assert item.event is not None
        groups.setdefault(item.event.source, []).append(item)
    return groups


def _worst(failures: Sequence[BaseException]) -> BaseException:
    """What to raise when several transactions failed: anything that is not an outage (a
    bug, a crash) wins, so it is never retried away."""
    for exc in failures:
        if not isinstance(exc, Exception) or classify(exc) is not Failure.RETRYABLE:
            return exc
    return failures[0]
