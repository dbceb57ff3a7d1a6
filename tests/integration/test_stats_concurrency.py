"""Notification stats under concurrent writers: no global lock.

Writers of different users never wait for each other (the per-user lock is a row lock on
the user, the shared counters are touched only at commit); writers of the same user take
turns; and many parallel writers, consumer-like batches and web-app statements alike, end
with the counters equal to a recount."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.integration.stats_helpers import (
    CHANNELS,
    Executor,
    add_profiles,
    assert_consistent,
    assert_exact,
    counts,
    make_users,
    set_settings,
    wait_until_waiting_on_a_lock,
)

# How long the second writer may wait for a lock before the test calls it blocked. It bounds
# only lock waits (not work), so load on the machine cannot trip it.
BLOCKED_AFTER = "500ms"

Step = Callable[[Executor, int], Coroutine[Any, Any, object]]


async def with_settings(db: Executor, user: int) -> None:
    await set_settings(db, [(user, "email", True), (user, "sms", False)])


async def with_settings_and_profile(db: Executor, user: int) -> None:
    await with_settings(db, user)
    await add_profiles(db, user)


async def with_profile(db: Executor, user: int) -> None:
    await add_profiles(db, user)


# What the Klaviyo consumer writes (consumers/handlers/klaviyo_store.py).
CONSUMER_SETTINGS = """
INSERT INTO user_notification_settings AS s (user_id, channel, enabled)
SELECT * FROM unnest($1::int[], $2::text[], $3::bool[])
ON CONFLICT (user_id, channel) DO UPDATE
SET enabled = EXCLUDED.enabled, updated_at = extract(epoch FROM now())
WHERE s.enabled IS DISTINCT FROM EXCLUDED.enabled
"""


async def consumer_flips_consent(db: Executor, user: int) -> None:
    await db.execute(CONSUMER_SETTINGS, [user], ["email"], [False])


@dataclass(frozen=True, slots=True)
class Op:
    """A write that changes the counts: `prepare` sets the user up (committed), `act` is
    the write under test."""

    prepare: Step
    act: Step


PROFILE_CREATED = Op(with_settings, with_profile)
CONSENT_FLIPPED = Op(with_settings_and_profile, consumer_flips_consent)
SETTING_INSERTED = Op(
    with_profile,
    lambda db, u: db.execute(
        "INSERT INTO user_notification_settings (user_id, channel, enabled)"
        " VALUES ($1, 'push', true)",
        u,
    ),
)
SETTING_UPDATED = Op(
    with_settings_and_profile,
    lambda db, u: db.execute(
        "UPDATE user_notification_settings SET enabled = NOT enabled WHERE user_id = $1", u
    ),
)
SETTING_DELETED = Op(
    with_settings_and_profile,
    lambda db, u: db.execute(
        "DELETE FROM user_notification_settings WHERE user_id = $1 AND channel = 'email'", u
    ),
)
PROFILE_DELETED = Op(
    with_settings_and_profile,
    lambda db, u: db.execute("DELETE FROM user_klaviyo_profiles WHERE user_id = $1", u),
)
USER_DELETED = Op(
    with_settings_and_profile, lambda db, u: db.execute("DELETE FROM users WHERE id = $1", u)
)

PAIRS = [
    pytest.param(PROFILE_CREATED, PROFILE_CREATED, id="profile created, profile created"),
    pytest.param(CONSENT_FLIPPED, CONSENT_FLIPPED, id="consent flipped, consent flipped"),
    pytest.param(PROFILE_CREATED, CONSENT_FLIPPED, id="profile created, consent flipped"),
    pytest.param(CONSENT_FLIPPED, PROFILE_CREATED, id="consent flipped, profile created"),
    pytest.param(SETTING_INSERTED, SETTING_INSERTED, id="web setting insert, web setting insert"),
    pytest.param(SETTING_UPDATED, CONSENT_FLIPPED, id="web setting update, consent flipped"),
    pytest.param(CONSENT_FLIPPED, SETTING_DELETED, id="consent flipped, web setting delete"),
    pytest.param(USER_DELETED, SETTING_UPDATED, id="user deleted, web setting update"),
    pytest.param(PROFILE_CREATED, USER_DELETED, id="profile created, user deleted"),
    pytest.param(PROFILE_DELETED, PROFILE_CREATED, id="profile deleted, profile created"),
]


@pytest.mark.parametrize(("held", "other"), PAIRS)
async def test_writers_of_different_users_do_not_wait_for_each_other(
    pool: asyncpg.Pool, held: Op, other: Op
) -> None:
    """One transaction writes for ann and stays open; another writes for bob, moving counts
    too (in most pairs the very same ones), and commits without waiting for any lock."""
    ann, bob = await make_users(pool, 2)
    await held.prepare(pool, ann)
    await other.prepare(pool, bob)
    before = await counts(pool)

    async with pool.acquire() as one, pool.acquire() as two, one.transaction():
        await held.act(one, ann)
        async with two.transaction():
            await two.execute(f"SET LOCAL lock_timeout = '{BLOCKED_AFTER}'")
            await other.act(two, bob)
        assert await counts(one) != before, "bob's change is committed and counted"

    await assert_consistent(pool)


async def test_writers_of_the_same_user_take_turns(pool: asyncpg.Pool) -> None:
    """The control for the test above: a settings insert for ann waits for the open
    transaction that created ann's profile (else each would miss the other's row)."""
    (ann,) = await make_users(pool, 1)
    await with_settings(pool, ann)

    async with pool.acquire() as one, pool.acquire() as two, one.transaction():
        await add_profiles(one, ann)
        with pytest.raises(asyncpg.LockNotAvailableError):
            async with two.transaction():
                await two.execute(f"SET LOCAL lock_timeout = '{BLOCKED_AFTER}'")
                await SETTING_INSERTED.act(two, ann)

    await assert_exact(pool, {("email", True): 1, ("sms", False): 1})
    await assert_consistent(pool)


async def test_a_transaction_counts_at_commit_and_a_rollback_never(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await with_settings(pool, ann)
    await with_settings(pool, bob)

    async with pool.acquire() as conn:
        async with conn.transaction():
            await add_profiles(conn, ann)
            assert await counts(conn) == {}, "folded into the counters only at commit"
        assert await counts(conn) == {("email", True): 1, ("sms", False): 1}

        with pytest.raises(asyncpg.DivisionByZeroError):
            async with conn.transaction():
                await add_profiles(conn, bob)
                await conn.execute("SELECT 1 / 0")

        async with conn.transaction():
            savepoint = conn.transaction()
            await savepoint.start()
            await add_profiles(conn, bob)
            await savepoint.rollback()
            await set_settings(conn, [(ann, "push", True)])

    await assert_exact(pool, {("email", True): 1, ("sms", False): 1, ("push", True): 1})
    await assert_consistent(pool)


async def test_serializable_writers_of_the_same_user_never_miscount(pool: asyncpg.Pool) -> None:
    """Under SERIALIZABLE the second transaction's snapshot predates the first one's commit;
    the write skew is detected (40001) instead of miscounted, and a retry counts it."""
    (ann,) = await make_users(pool, 1)
    await with_settings(pool, ann)

    async with pool.acquire() as one, pool.acquire() as two:
        first = one.transaction(isolation="serializable")
        await first.start()
        second = two.transaction(isolation="serializable")
        await second.start()
        await two.fetchval("SELECT 1")  # take the snapshot before the profile exists
        await add_profiles(one, ann)
        blocked = asyncio.create_task(SETTING_INSERTED.act(two, ann))
        await wait_until_waiting_on_a_lock(one, two.get_server_pid())
        await first.commit()
        try:
            await blocked
            await second.commit()
        except asyncpg.SerializationError:
            await second.rollback()
            async with two.transaction(isolation="serializable"):
                await SETTING_INSERTED.act(two, ann)

    await assert_exact(pool, {("email", True): 1, ("sms", False): 1, ("push", True): 1})
    await assert_consistent(pool)


async def test_a_rebuild_waits_for_open_writers_and_counts_them_once(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await with_settings_and_profile(pool, ann)
    await with_settings(pool, bob)

    async with pool.acquire() as one, pool.acquire() as two:
        async with one.transaction():
            await add_profiles(one, bob)
            await PROFILE_DELETED.act(one, ann)
            rebuild = asyncio.create_task(
                two.execute("SELECT user_notification_setting_stats_rebuild()")
            )
            await wait_until_waiting_on_a_lock(one, two.get_server_pid())
        await rebuild

    await assert_exact(pool, {("email", True): 1, ("sms", False): 1})
    await assert_consistent(pool)


# The parallel-writers test: a few consumers writing Klaviyo-like batches in multi-statement
# transactions and a few web-app writers issuing single statements, over a small set of users
# so that they collide, then one recount.
WRITERS = 3  # of each kind
ROUNDS = 40  # of one transaction per writer
USERS = 10
# Seconds a consumer transaction stays open after each statement, so that the other writers'
# statements land inside it (the window a missing per-user lock would miscount in).
HOLD = 0.005
# Races that a real writer also meets and retries: a deadlock between two multi-statement
# transactions of overlapping users (40P01), a user deleted under the write, a profile
# created by another writer first.
RETRY = (
    asyncpg.TransactionRollbackError,
    asyncpg.ForeignKeyViolationError,
    asyncpg.UniqueViolationError,
)

CONSUMER_PROFILES = """
INSERT INTO user_klaviyo_profiles
    (uid, klaviyo_id, user_id, email, timezone, environment, created_at, updated_at)
SELECT 'ukp_' || u.id, 'K' || u.id, u.id, u.email, 'UTC', 'dev', 1, 1
FROM users AS u
WHERE u.id = ANY ($1::integer[])
  AND NOT EXISTS (SELECT FROM user_klaviyo_profiles AS p WHERE p.user_id = u.id)
"""

MOVE_PROFILE = """
UPDATE user_klaviyo_profiles SET user_id = $2
WHERE user_id = $1 AND NOT EXISTS (SELECT FROM user_klaviyo_profiles WHERE user_id = $2)
"""

WEB_CREATE_USER = """
WITH u AS (
    INSERT INTO users (uid, email) VALUES ('usr_' || gen_random_uuid(), 'new@example.com')
    RETURNING id
)
INSERT INTO user_notification_settings (user_id, channel, enabled)
SELECT u.id, c, $1 FROM u, unnest($2::text[]) AS c
RETURNING user_id
"""

WEB_SET = """
INSERT INTO user_notification_settings (user_id, channel, enabled) VALUES ($1, $2, $3)
ON CONFLICT (user_id, channel) DO UPDATE SET enabled = EXCLUDED.enabled
"""


async def consumer_transaction(conn: Executor, rng: random.Random, users: list[int]) -> None:
    profiles = rng.sample(users, min(3, len(users)))
    keys = {(rng.choice(users), rng.choice(("email", "sms"))) for _ in range(6)}
    ordered = sorted(keys)
    flips = [rng.random() < 0.5 for _ in ordered]

    async def write_profiles() -> None:
        await conn.execute(CONSUMER_PROFILES, profiles)

    async def write_settings() -> None:
        await conn.execute(
            CONSUMER_SETTINGS, [u for u, _ in ordered], [c for _, c in ordered], flips
        )

    steps = [write_profiles, write_settings]
    rng.shuffle(steps)
    for step in steps:
        await step()
        await asyncio.sleep(HOLD)  # keep the transaction open while the others write
    if rng.random() < 0.1:
        await conn.execute(MOVE_PROFILE, rng.choice(users), rng.choice(users))


async def web_statement(conn: Executor, rng: random.Random, users: list[int]) -> None:
    user = rng.choice(users)
    roll = rng.random()
    await asyncio.sleep(rng.random() * 2 * HOLD)  # land inside the consumers' transactions
    if roll < 0.4:
        await conn.execute(WEB_SET, user, rng.choice(CHANNELS), rng.random() < 0.5)
    elif roll < 0.55:
        await conn.execute(
            "DELETE FROM user_notification_settings WHERE user_id = $1 AND channel = $2",
            user,
            rng.choice(CHANNELS),
        )
    elif roll < 0.65:
        await conn.execute("DELETE FROM user_klaviyo_profiles WHERE user_id = $1", user)
    elif roll < 0.75:
        await conn.execute("DELETE FROM users WHERE id = $1", user)
        if user in users:  # another web writer may have deleted it in the same round
            users.remove(user)
    elif roll < 0.9:
        rows = await conn.fetch(WEB_CREATE_USER, rng.random() < 0.5, list(CHANNELS[:2]))
        users.append(rows[0]["user_id"])
    else:
        await conn.execute(
            "UPDATE user_notification_settings SET enabled = NOT enabled WHERE user_id = $1",
            user,
        )


Body = Callable[[Executor, random.Random, list[int]], Coroutine[Any, Any, None]]


async def commit_one(
    conn: asyncpg.Connection, body: Body, rng: random.Random, users: list[int]
) -> int:
    """Commit one transaction of `body`, retrying the races; returns how many were retried."""
    for attempt in range(50):
        try:
            async with conn.transaction():
                await body(conn, rng, users)
            return attempt
        except RETRY:
            continue
    raise AssertionError("a transaction kept losing races")


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed {s}") for s in (1, 2)])
async def test_parallel_consumers_and_web_app_end_equal_to_a_recount(
    pool: asyncpg.Pool, database_url: str, seed: int
) -> None:
    """Rounds of one transaction per writer, all in flight together, checked after each
    round: the reconciliation heals a user's drift the next time the user is written, so a
    miscount must be caught before that happens."""
    users = await make_users(pool, USERS)
    rng = random.Random(seed)
    await set_settings(pool, [(u, c, rng.random() < 0.5) for u in users[::2] for c in CHANNELS])
    await add_profiles(pool, *users[::3])
    bodies: list[Body] = [*[consumer_transaction] * WRITERS, *[web_statement] * WRITERS]
    rngs = [random.Random(seed * 100 + i) for i in range(len(bodies))]

    # Deadlocks are expected (see RETRY); detect them quickly rather than after the default 1 s.
    quick = {"deadlock_timeout": "50ms"}
    conns = [await asyncpg.connect(database_url, server_settings=quick) for _ in bodies]
    try:
        for _ in range(ROUNDS):
            await asyncio.gather(
                *(commit_one(c, b, r, users) for c, b, r in zip(conns, bodies, rngs, strict=True))
            )
            await assert_consistent(pool)
    finally:
        for conn in conns:
            await conn.close()

    assert sum((await counts(pool)).values()) > 0, "the writers left something to count"
