"""Bring one customer in line with our tables: at most one call per change, never two calls
in flight for one customer, and a retry after a crash that changes nothing.

For each customer, under its own lock (the event loop and the sweep share it):

    read the customer -> an intent left open? re-send it unchanged, record the answer, and
    read again -> compare -> nothing differs? done -> commit the intent (what will be sent,
    with its updated_at_ms) -> call -> record the answer and close the intent in one
    transaction

The call runs between two transactions, never inside one. A process killed during the call
leaves the intent; whoever reads the customer next re-sends exactly that body, and RevenueCat,
keeping the value with the latest ``updated_at_ms``, sees one change. Calls in flight are
bounded by ``RC_SYNC_CONCURRENCY``; their pace is the rate limit's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from consumers import db
from rcsync import metrics, store
from rcsync.api import Sender
from rcsync.model import Customer, Target
from rcsync.wanted import changes

log = logging.getLogger("rcsync.sync")


class KeyedLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Syncer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        *,
        environment: str,
        concurrency: int,
        transaction_timeout_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.sender = sender
        self.environment = environment
        self.transaction_timeout_s = transaction_timeout_s
        self._clock = clock
        self._locks = KeyedLocks()
        self._calls = asyncio.Semaphore(concurrency)
        self.calls = 0  # calls settled by this syncer

    def due(self, customer: Customer, target: Target | None = None) -> bool:
        """Whether ``customer`` needs a call (read outside the lock: :meth:`sync` decides
        again under it)."""
        if customer.intent:
            return True
        reported, event_ms = (target.reported, target.event_ms) if target else ({}, 0.0)
        return bool(changes(customer, self.environment, self._now_ms(), reported, event_ms))

    async def sync(self, target: Target) -> None:
        """Settle ``target``'s open intent, then send what still differs, if anything."""
        async with self._locks.hold(target.revenue_cat_id):
            metrics.CUSTOMERS_BEHIND.inc()
            try:
                # At most twice: a leftover intent first, then the customer as it is now.
                for _ in range(2):
                    if not await self._once(target):
                        return
            finally:
                metrics.CUSTOMERS_BEHIND.dec()

    async def _once(self, target: Target) -> bool:
        """One call at most; True when it re-sent an intent (so compare again)."""
        rc_id = target.revenue_cat_id
        async with db.connection(self.pool) as conn:
            found = (await store.load(conn, [rc_id])).get(rc_id)
            if found is None:
                return False  # the row is gone
            resend = found.intent is not None
            body = found.intent or changes(
                found, self.environment, self._now_ms(), target.reported, target.event_ms
            )
            if not body:
                return False
            if not resend and not await store.write_intent(conn, rc_id, body):
                return False  # the row went since it was read
        async with self._calls:
            answer = await self.sender.set_attributes(rc_id, body)
        ids = (rc_id, *target.also)
        await store.settle(self.pool, ids, body, answer, self._clock(), self.transaction_timeout_s)
        self.calls += 1
        log.info(
            "attributes synced" if not answer.refused else "attributes refused by RevenueCat",
            extra={
                "revenue_cat_id": rc_id,
                "accepted": list(answer.accepted),
                "refused": dict(answer.refused),
                "status": answer.status,
                "resent": resend,
            },
        )
        return resend

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)
