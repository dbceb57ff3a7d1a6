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
  (``consumers.groups``) and dead-lettered; the rest of the batch commits. A source whose
  recent records are mostly poison floods (``consumers.flood``): it is alerted, or, when every
  source of this runner floods, the runner holds instead of draining the topics into the
  DLQ: nothing of the batch is committed, fetching stays paused, /readyz fails;
- anything else (a bug, a broken deployment) stops the runner without committing, with the
  traceback logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import Tracer

from consumers import db, dlq, store
from consumers.apply import Report
from consumers.backoff import Backoff
from consumers.decode import Item, RawRecord, committable, decode_all
from consumers.fetch import fetch_batch
from consumers.flood import FloodGuard, PoisonFlood, Tally, source_key, tally
from consumers.groups import GroupApply, GroupKey, by_source, dead_letters
from consumers.isolate import Progress
from consumers.liveness import Liveness
from consumers.observe import BatchReport, observe_batch
from consumers.offsets import Offsets
from consumers.outage import Outages
from consumers.policies import ApplyPolicy, FetchPolicy, FloodPolicy, Timeouts
from consumers.steps import until_stopped
from consumers.tracing import batch_span
from consumers.types import Handler
from contract.headers import CE_SOURCE

log = logging.getLogger("consumers.runner")


__all__ = ["NO_HOOKS", "Hooks", "PoisonFlood", "Runner"]

Batch = tuple[list[RawRecord], list[Item]]  # fetched records, and what decoding made of them


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
        self.apply_groups = GroupApply(
            self.handlers, pool, apply, scope=scope, beat=self.liveness.beat
        )
        self.transaction_timeout_s = apply.transaction_timeout_s
        self.flood = FloodGuard(flood, self.handlers)
        self.held: str | None = None  # why the runner holds (a poison flood), if it does
        self._prefetch: asyncio.Task[Batch] | None = None

    # -- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set. A batch in flight when it is set gets
        ``timeouts.shutdown_s`` to finish (its offsets are committed); past the deadline it
        is abandoned uncommitted and will be redelivered."""
        try:
            await until_stopped(self.step, stop, self.timeouts.shutdown_s)
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
            await self.aclose()

    async def _hold(self, flood: PoisonFlood, stop: asyncio.Event) -> None:
        """Every source floods: keep the group membership and the partitions, fetch nothing,
        commit nothing, report not ready, until stopped. Restarting would only meet the same
        records again (they are not committed), so the process neither exits nor fails its
        liveness; a fixed deployment (or a higher POISON_MAX_SHARE) resumes from the
        committed offsets."""
        self.held = str(flood)
        self.flood.hold(flood)
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
        return await fetch_batch(self.consumer, self.fetch_policy, self.timeouts.io_s, self.backoff)

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
        groups = by_source(i for i in items if i.event is not None)
        progress: dict[GroupKey, Progress[Item, Report]] = {g: Progress() for g in groups}
        await self.outages.retrying("apply", lambda: self.apply_groups(groups, progress))
        dead = dead_letters(items, progress)
        self.flood.check(time.monotonic(), self._tally(items, dead))
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

    def _tally(self, items: Sequence[Item], dead: Sequence[dlq.DeadLetter]) -> dict[str, Tally]:
        """Records and dead letters per source for the flood guard. A record `dlq replay`
        sent back that fails again was poison already: an operator replaying a DLQ that
        still holds bad records is not a broken deployment, so it is left out."""
        died = {d.raw.position for d in dead}

        def counted() -> Iterable[tuple[str, bool]]:
            for item in items:
                is_dead = item.raw.position in died
                if is_dead and dlq.replay_count(item.raw) > 0:
                    continue
                declared = item.event.source if item.event else item.raw.header(CE_SOURCE)
                yield source_key(declared, item.raw.topic, self.handlers), is_dead

        return tally(counted())

    # -- dead letters and commits ---------------------------------------------------------

    async def _log_dead(self, letters: Sequence[dlq.DeadLetter]) -> None:
        async with db.transaction(self.pool, self.transaction_timeout_s) as conn:
            await store.log_dead_letters(conn, [dlq.log_row(letter) for letter in letters])

    @property
    def paused(self) -> bool:
        """True while an outage holds the batch in hand and fetching is paused."""
        return self.outages.paused

    @property
    def ready(self) -> bool:
        """Holds partitions and is not holding after a poison flood."""
        return bool(self.consumer.assignment()) and self.held is None
