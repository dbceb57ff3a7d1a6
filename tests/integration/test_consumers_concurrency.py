"""Handlers under concurrency, two connections driven step by step against the real
PostgreSQL: a transaction that waited for a lock decides on what the holder committed, and a
consumer transaction and a web-app transaction of the same user never deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg

from consumers.apply import Disposition, apply_events
from consumers.registry import build_handlers
from consumers.types import Context
from contract.records import Record
from tests.integration.stats_helpers import (
    add_profiles,
    assert_consistent,
    make_users,
    wait_until_waiting_on_a_lock,
)
from tests.integration.test_consumers_handlers import consent_event, events_of, kit_event, token
from tests.support import PENDING


@asynccontextmanager
async def two_connections(dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    # A deadlock, should there be one, is reported at once rather than after a second.
    quick = {"deadlock_timeout": "50ms"}
    a = await asyncpg.connect(dsn, server_settings=quick)
    b = await asyncpg.connect(dsn, server_settings=quick)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def apply_on(conn: asyncpg.Connection, records: Sequence[Record]) -> list[Disposition]:
    """Apply inside the caller's open transaction on ``conn``."""
    ctx = Context(environment="dev", now=datetime.now(UTC))
    report = await apply_events(
        conn, build_handlers(()), events_of(records), ctx, backoff_max_s=PENDING.backoff_max_s
    )
    return [s.disposition for s in report.settled]


async def apply_committed(conn: asyncpg.Connection, records: Sequence[Record]) -> list[Disposition]:
    async with conn.transaction():
        return await apply_on(conn, records)


async def test_kit_event_that_waited_for_the_profile_sees_the_newer_version(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """A parked `activated` (t1) is retried while the live consumer applies `unsubscribed`
    (t2) in an open transaction: the retry waits for the profile, then must find t2's
    version and leave t2's state."""
    email = f"{token()}@example.com"
    profile_id = await pool.fetchval(
        "INSERT INTO user_profiles (email) VALUES ($1) RETURNING id", email
    )
    newer = kit_event(email, "subscriber.unsubscribed", "2024-05-02T00:00:00Z")
    older = kit_event(email, "subscriber.activated", "2024-05-01T00:00:00Z")

    async with two_connections(database_url) as (a, b):
        tx = a.transaction()
        await tx.start()
        try:
            assert await apply_on(a, newer) == [Disposition.APPLIED]
            waiting = asyncio.create_task(apply_committed(b, older))
            await wait_until_waiting_on_a_lock(pool, b.get_server_pid())
        finally:
            await tx.commit()
        assert await waiting == [Disposition.APPLIED]

    state = await pool.fetchval("SELECT kit_state FROM user_profiles WHERE id = $1", profile_id)
    version = await pool.fetchval(
        "SELECT event_time FROM ingest_kit_versions WHERE user_profile_id = $1", profile_id
    )
    assert (state, version) == ("cancelled", datetime(2024, 5, 2, tzinfo=UTC))


WEB_SET = """
INSERT INTO user_notification_settings (user_id, channel, enabled) VALUES ($1, $2, $3)
ON CONFLICT (user_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled
"""


async def test_consent_and_a_web_transaction_of_the_same_user_do_not_deadlock(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """The web app updates the user, the consumer applies a consent of that user, the web
    app writes the same setting and commits: the consumer waits for the user's row before it
    touches the setting, so neither transaction is aborted with 40P01."""
    (user,) = await make_users(pool, 1)
    await add_profiles(pool, user)  # klaviyo_id 'K<user id>'
    consent = consent_event(f"K{user}", "email", False, "2024-05-01T00:00:00Z")

    async with two_connections(database_url) as (web, consumer):
        tx = web.transaction()
        await tx.start()
        try:
            await web.execute("UPDATE users SET email = 'new-' || email WHERE id = $1", user)
            applying = asyncio.create_task(apply_committed(consumer, consent))
            await wait_until_waiting_on_a_lock(pool, consumer.get_server_pid())
            await web.execute(WEB_SET, user, "email", True)
        finally:
            await tx.commit()
        assert await applying == [Disposition.APPLIED]

    enabled = await pool.fetchval(
        "SELECT enabled FROM user_notification_settings WHERE user_id = $1 AND channel = 'email'",
        user,
    )
    assert enabled is False  # the consumer's write came last
    await assert_consistent(pool)
