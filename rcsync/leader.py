"""One rc-sync at a time: a PostgreSQL session advisory lock, held for the life of the
process on a connection of its own.

RevenueCat's rate limit is per project and "never two calls in flight for one customer" is
kept by locks inside one process, so a second rc-sync (a rollout's new pod, a hand-started
one next to ``make dev``) waits for the lock before it joins the group or calls anything.
A killed process's connection drops and the server releases the lock with it; a process
whose lock connection breaks stops at once, since another may take the lock.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from core.errors import CommandError

log = logging.getLogger("rcsync.leader")

# A fixed two-int advisory key: 'RCSY' (0x52435359), 1.
LOCK_KEY = (1380143961, 1)
CHECK_EVERY_S = 5.0


class LockLost(CommandError):
    def __init__(self, error: BaseException) -> None:
        super().__init__(
            f"lost the rc-sync lock ({type(error).__name__}: {error}); stopping, so that"
            " a restart takes it again"
        )


class Leader:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.held = True

    @classmethod
    async def acquire(
        cls, dsn: str, stop: asyncio.Event, *, poll_s: float = 1.0, timeout_s: float = 10.0
    ) -> Leader | None:
        """The lock, once no other rc-sync holds it; None when ``stop`` came first."""
        conn = await asyncpg.connect(dsn, timeout=timeout_s, command_timeout=timeout_s)
        waiting = False
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *LOCK_KEY):
            if not waiting:
                log.warning("another rc-sync holds the rc-sync lock; waiting for it")
                waiting = True
            try:
                await asyncio.wait_for(stop.wait(), poll_s)
            except TimeoutError:
                continue
            await conn.close()
            return None
        return cls(conn)

    async def watch(self, stop: asyncio.Event) -> None:
        """Check the lock's connection until ``stop``; raises :class:`LockLost` if it broke."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), CHECK_EVERY_S)
                return
            except TimeoutError:
                pass
            try:
                await self.conn.fetchval("SELECT 1", timeout=CHECK_EVERY_S)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                self.held = False
                raise LockLost(exc) from exc

    async def release(self) -> None:
        self.held = False
        if not self.conn.is_closed():
            await self.conn.close()
