"""Builders and checks shared by the notification-stats tests: users, profiles and settings
written the way the Klaviyo consumer and the web app write them, and the recount the
counters must always equal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Counts = dict[tuple[str, bool], int]
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

CHANNELS = ("email", "sms", "push")

UPSERT_PROFILE = """
INSERT INTO user_klaviyo_profiles
    (uid, klaviyo_id, user_id, email, timezone, environment, created_at, updated_at)
SELECT 'ukp_' || u.id, 'K' || u.id, u.id, u.email, 'UTC', 'dev', 1, 1
FROM users AS u WHERE u.id = ANY ($1::integer[])
ON CONFLICT (klaviyo_id) DO UPDATE SET updated_at = EXCLUDED.updated_at + 1
"""

UPSERT_SETTINGS = """
INSERT INTO user_notification_settings (user_id, channel, enabled)
SELECT * FROM unnest($1::integer[], $2::text[], $3::boolean[])
ON CONFLICT (user_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled
"""

# What the counters must equal: settings of users that have a Klaviyo profile.
TRUTH = """
SELECT s.channel, s.enabled, count(*) AS users
FROM user_notification_settings AS s
JOIN user_klaviyo_profiles AS p ON p.user_id = s.user_id
GROUP BY s.channel, s.enabled
"""

# The ledger against the rows it stands for, both ways; empty when they agree.
LEDGER_DRIFT = """
(SELECT m.user_id, m.channel, m.enabled FROM user_notification_setting_stats_members AS m
 EXCEPT
 SELECT s.user_id, s.channel, s.enabled FROM user_notification_settings AS s
 JOIN user_klaviyo_profiles AS p ON p.user_id = s.user_id)
UNION ALL
(SELECT s.user_id, s.channel, s.enabled FROM user_notification_settings AS s
 JOIN user_klaviyo_profiles AS p ON p.user_id = s.user_id
 EXCEPT
 SELECT m.user_id, m.channel, m.enabled FROM user_notification_setting_stats_members AS m)
"""


async def make_users(db: Executor, count: int) -> list[int]:
    rows = await db.fetch(
        "INSERT INTO users (uid, email) SELECT 'usr_' || gen_random_uuid(), 'u' || n ||"
        " '@example.com' FROM generate_series(1, $1) AS n RETURNING id",
        count,
    )
    return [r["id"] for r in rows]


async def add_profiles(db: Executor, *user_ids: int) -> None:
    await db.execute(UPSERT_PROFILE, list(user_ids))


async def set_settings(db: Executor, settings: Iterable[tuple[int, str, bool]]) -> None:
    users, channels, enabled = zip(*settings, strict=True)
    await db.execute(UPSERT_SETTINGS, list(users), list(channels), list(enabled))


async def counts(db: Executor) -> Counts:
    rows = await db.fetch("SELECT channel, enabled, users FROM user_notification_setting_stats")
    return {(r["channel"], r["enabled"]): r["users"] for r in rows if r["users"]}


async def recount(db: Executor) -> Counts:
    return {(r["channel"], r["enabled"]): r["users"] for r in await db.fetch(TRUTH)}


async def assert_exact(db: Executor, expected: Counts) -> None:
    assert await recount(db) == expected, "the scenario itself is wrong"
    assert await counts(db) == expected


async def assert_consistent(db: Executor) -> None:
    """Counters equal the recount, the ledger equals its rows, no delta was left behind."""
    assert await counts(db) == await recount(db)
    assert [tuple(r) for r in await db.fetch(LEDGER_DRIFT)] == []
    assert await db.fetchval("SELECT count(*) FROM user_notification_setting_stats_deltas") == 0


async def wait_until_waiting_on_a_lock(observer: Executor, pid: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        waiting = await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on a lock")
