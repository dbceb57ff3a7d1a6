"""Connections from the pool, typed as the ``asyncpg.Connection`` the handler seam takes.

Every call is bounded: the pool's ``command_timeout`` bounds one call on the client, the
server settings bound statements, lock waits and idle transactions on the server, and
:func:`transaction` cuts a whole transaction that outlives its deadline by closing its
connection (a frozen server answers neither the query nor a ROLLBACK nor a cancel request).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from consumers.errors import RetryableError
from core.settings import Settings


class TransactionTimeout(RetryableError):
    """A transaction outlived its deadline; its connection was closed, nothing committed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"database transaction still open after {seconds:g} s; connection closed")
        self.seconds = seconds


def server_settings(settings: Settings) -> dict[str, str]:
    """The session settings of every consumer connection (milliseconds; 0 turns one off)."""
    return {
        "statement_timeout": _ms(settings.db_statement_timeout_s),
        "lock_timeout": _ms(settings.db_lock_timeout_s),
        "idle_in_transaction_session_timeout": _ms(settings.db_idle_in_transaction_timeout_s),
    }


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))


async def create_pool(settings: Settings, *, min_size: int = 1) -> asyncpg.Pool:
    """The pool every consumer process and verb uses (``DB_POOL_MAX`` connections at most).
    ``min_size=0`` connects on first use (the console starts while the database is down)."""
    timeout = settings.db_command_timeout_s or None
    return await asyncpg.create_pool(
        settings.require_database_url(),
        min_size=min_size,
        max_size=settings.db_pool_max,
        command_timeout=timeout,
        timeout=timeout or 60.0,
        server_settings=server_settings(settings),
    )


@asynccontextmanager
async def connection(
    pool: asyncpg.Pool, timeout_s: float | None = None
) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire(timeout=timeout_s) as proxy:
        # The pool hands out a proxy that forwards every Connection method.
        yield cast(asyncpg.Connection, proxy)


@asynccontextmanager
async def transaction(
    pool: asyncpg.Pool, timeout_s: float | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """One READ COMMITTED transaction (the stats triggers refuse REPEATABLE READ).

    With ``timeout_s``, acquiring a connection and the whole transaction each get that long;
    past it the connection is closed, which fails whatever it was waiting for, and
    :class:`TransactionTimeout` (retryable) is raised.
    """
    async with connection(pool, timeout_s) as conn:
        if timeout_s is None:
            async with conn.transaction():
                yield conn
            return
        loop = asyncio.get_running_loop()
        expired = False

        def cut() -> None:
            nonlocal expired
            expired = True
            conn.terminate()

        watchdog = loop.call_later(timeout_s, cut)
        try:
            async with conn.transaction():
                yield conn
        except Exception as exc:
            if expired:
                raise TransactionTimeout(timeout_s) from exc
            raise
        finally:
            watchdog.cancel()
