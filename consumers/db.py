"""Connections from the pool, typed as the ``asyncpg.Connection`` the handler seam takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import asyncpg

from core.settings import Settings


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """The pool every consumer process and verb uses (``DB_POOL_MAX`` connections at most)."""
    return await asyncpg.create_pool(
        settings.require_database_url(), min_size=1, max_size=settings.db_pool_max
    )


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as proxy:
        # The pool hands out a proxy that forwards every Connection method.
        yield cast(asyncpg.Connection, proxy)


@asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One READ COMMITTED transaction (the stats triggers refuse REPEATABLE READ)."""
    async with connection(pool) as conn, conn.transaction():
        yield conn
