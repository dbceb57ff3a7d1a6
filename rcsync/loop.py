"""rc-sync's consumer loop, spelled out:

    fetch a bounded batch -> decode -> one target per RevenueCat customer the batch names ->
    read those customers -> sync each that differs (:class:`rcsync.sync.Syncer`, calls
    concurrent up to RC_SYNC_CONCURRENCY) -> commit the batch's offsets -> repeat

Offsets are committed only once every customer of the batch was answered for good (taken or
refused); until then a crash redelivers the batch, and what was already set compares equal.
While a batch waits on RevenueCat (for a day, if RevenueCat is down for a day), its
partitions are paused and the consumer is still polled every second, so the group keeps the
member and the backlog stays in the topic. A database or broker outage retries the batch
with backoff; an undecodable record is left to the consumers (they dead-letter it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from aiokafka import errors as kafka_errors

from consumers import db
from consumers.backoff import Backoff
from consumers.classify import Failure, classify
from consumers.decode import RawRecord, committable, decode_all
from consumers.fetch import fetch_batch
from consumers.handlers.revenuecat import identifiers
from consumers.liveness import Liveness
from consumers.offsets import Offsets
from consumers.policies import FetchPolicy
from consumers.steps import until_stopped
from contract.topics import SOURCE_REVENUECAT
from rcsync import metrics, store
from rcsync.sync import Syncer
from rcsync.wanted import targets

log = logging.getLogger("rcsync.loop")

T = TypeVar("T")
POLL_WHILE_BUSY_S = 1.0


class SyncLoop:
    def __init__(
        self,
        consumer: Any,
        pool: asyncpg.Pool,
        syncer: Syncer,
        *,
        fetch: FetchPolicy,
        io_timeout_s: float,
        shutdown_s: float,
        liveness: Liveness,
        backoff: Backoff,
    ) -> None:
        self.consumer = consumer
        self.pool = pool
        self.syncer = syncer
        self.fetch_policy = fetch
        self.io_timeout_s = io_timeout_s
        self.shutdown_s = shutdown_s
        self.liveness = liveness
        self.backoff = backoff
        self.offsets = Offsets(consumer, io_timeout_s, liveness, lag=metrics.LAG)

    async def run(self, stop: asyncio.Event) -> None:
        """Batches until ``stop``; a batch in hand then gets ``shutdown_s`` to finish, after
        which it is abandoned uncommitted (its open intent is re-sent by the next start)."""
        await until_stopped(self.step, stop, self.shutdown_s)

    async def step(self) -> int:
        """Fetch one batch and handle it to its commit; returns the records it held."""
        records = await self.fetch()
        if records:
            self.liveness.batch_in_hand = True
            work = asyncio.ensure_future(self.retrying("sync", lambda: self.sync_batch(records)))
            try:
                await self._poll_while(work)
            finally:
                if not work.done():
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
            work.result()
            await self.retrying("offset commit", lambda: self.offsets.commit(committable(records)))
            self.liveness.batch_in_hand = False
        self.offsets.update_lag()
        self.liveness.beat()
        return len(records)

    async def fetch(self) -> list[RawRecord]:
        return await fetch_batch(self.consumer, self.fetch_policy, self.io_timeout_s, self.backoff)

    async def sync_batch(self, records: Sequence[RawRecord]) -> None:
        events = []
        for item in decode_all(records):
            if item.event is None:
                log.warning(
                    "undecodable record left to the consumers", extra={"error": str(item.error)}
                )
            elif item.event.source == SOURCE_REVENUECAT:
                events.append(item.event)
        named = {i for e in events if isinstance(e.data, dict) for i in identifiers(e.data)}
        customers = {}
        if named:
            async with db.connection(self.pool) as conn:
                customers = await store.load(conn, named)
        environment = self.syncer.environment
        due = [
            t
            for t in targets(events, customers, environment)
            if self.syncer.due(customers[t.revenue_cat_id], t)
        ]
        async with asyncio.TaskGroup() as group:
            for target in due:
                group.create_task(self.syncer.sync(target))

    async def retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """``step`` until it succeeds; a database or broker outage is retried with backoff,
        anything else goes up."""
        attempt = 0
        while True:
            try:
                return await step()
            except Exception as exc:
                if classify(exc) is not Failure.RETRYABLE:
                    raise
                delay = self.backoff.delay(attempt)
                attempt += 1
                log.warning(
                    f"{what} failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                self.liveness.beat()
                await asyncio.sleep(delay)

    async def _poll_while(self, work: asyncio.Future[None]) -> None:
        """Keep the group membership while ``work`` runs: pause every partition (those a
        rebalance hands over meanwhile too) and poll; a record a poll returns anyway is
        sought back to, so it is fetched again after the batch."""
        consumer = self.consumer
        paused = False
        while True:
            done, _ = await asyncio.wait({work}, timeout=POLL_WHILE_BUSY_S)
            if done:
                break
            paused = True
            self.liveness.beat()
            consumer.pause(*consumer.assignment())
            try:
                async with asyncio.timeout(self.io_timeout_s):
                    returned = await consumer.getmany(timeout_ms=0)
            except (kafka_errors.KafkaError, TimeoutError):
                continue
            for tp, fetched in returned.items():
                if fetched:
                    consumer.seek(tp, min(r.offset for r in fetched))
        if paused:
            consumer.resume(*consumer.assignment())
