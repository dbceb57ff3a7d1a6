"""The sweep: changes our tables got without any webhook (the web app edits ``users.email``
or a name directly) reach RevenueCat too.

A sweep walks every customer in ``user_revenue_cat_ids.id`` order, in passes of
``RC_SYNC_SWEEP_ROWS`` rows back to back (each pass one keyset query, so each costs the same
wherever it is), comparing each with what RevenueCat holds as far as we know
(``revenue_cat_attributes``) and syncing those that differ; then it rests
``RC_SYNC_SWEEP_INTERVAL_S`` and starts over. Before each sweep, intents a killed process left
open are re-sent. The calls go through the same :class:`~rcsync.sync.Syncer` as the events,
so they share its per-customer locks, its concurrency and the rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from consumers.classify import Failure, classify
from rcsync import metrics, store
from rcsync.model import Attributes, Customer, Target
from rcsync.sync import Syncer
from rcsync.wanted import changes

log = logging.getLogger("rcsync.sweep")

LEFTOVERS_PER_PASS = 1000
RETRY_S = 30.0  # after a sweep the database cut short


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    interval_s: float  # RC_SYNC_SWEEP_INTERVAL_S; 0 = no sweep
    rows: int  # RC_SYNC_SWEEP_ROWS


async def customers(pool: asyncpg.Pool, rows: int) -> AsyncIterator[list[Customer]]:
    """Every customer once, in pages of ``rows``."""
    after = 0
    while True:
        found = await store.page(pool, after, rows)
        if not found:
            return
        after = found[-1][0]
        yield [c for _, c in found]


async def resend_leftovers(pool: asyncpg.Pool, syncer: Syncer) -> int:
    """Settle every intent a killed process left open; returns how many."""
    left = await store.leftovers(pool, LEFTOVERS_PER_PASS)
    if left:
        log.info("re-sending calls left unanswered", extra={"customers": len(left)})
        async with asyncio.TaskGroup() as group:
            for customer in left:
                group.create_task(syncer.sync(Target(customer.revenue_cat_id)))
    return len(left)


async def sweep_once(pool: asyncpg.Pool, syncer: Syncer, rows: int) -> int:
    """One sweep over every customer; returns how many were synced."""
    synced = 0
    async for batch in customers(pool, rows):
        metrics.SWEEP_ROWS.inc(len(batch))
        due = [c for c in batch if syncer.due(c)]
        async with asyncio.TaskGroup() as group:
            for customer in due:
                group.create_task(syncer.sync(Target(customer.revenue_cat_id)))
        synced += len(due)
    metrics.SWEEP_COMPLETED.set(time.time())
    return synced


async def run_sweeps(
    pool: asyncpg.Pool, syncer: Syncer, policy: SweepPolicy, stop: asyncio.Event
) -> None:
    """Leftover intents at once, then sweeps every ``interval_s`` until ``stop``."""
    while not stop.is_set():
        rest = policy.interval_s
        try:
            await resend_leftovers(pool, syncer)
            if policy.interval_s <= 0:
                return
            synced = await sweep_once(pool, syncer, policy.rows)
            log.info("sweep done", extra={"synced": synced})
        except Exception as exc:
            if classify(exc) is not Failure.RETRYABLE:
                raise
            # The database is away: the next sweep starts over, sooner.
            rest = min(rest, RETRY_S) if rest > 0 else RETRY_S
            log.warning("sweep failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rest)


async def plan(
    pool: asyncpg.Pool, environment: str, rows: int
) -> AsyncIterator[tuple[str, Attributes]]:
    """What a sweep would send, customer by customer, without writing or calling anything
    (``ingester rc-sync --dry-run``); an open intent is shown as it would be re-sent."""
    now_ms = int(time.time() * 1000)
    async for batch in customers(pool, rows):
        for customer in batch:
            body = customer.intent or changes(customer, environment, now_ms)
            if body:
                yield customer.revenue_cat_id, body
