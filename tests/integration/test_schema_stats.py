"""user_notification_setting_stats counts, per (channel, enabled), the users WITH a Klaviyo
profile: the triggers keep it equal to that count through upserts, flips, deletes, cascades,
moved profiles, batches and concurrent transactions, and never let it go negative."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.integration.stats_helpers import (
    Executor,
    add_profiles,
    assert_exact,
    make_users,
    recount,
    set_settings,
    wait_until_waiting_on_a_lock,
)


async def test_profile_creation_counts_the_users_settings_once(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await set_settings(pool, [(ann, "email", True), (ann, "sms", False), (bob, "email", True)])

    await add_profiles(pool, ann)
    await add_profiles(pool, ann)  # an upsert of the same profile

    await assert_exact(pool, {("email", True): 1, ("sms", False): 1})


async def test_users_without_a_profile_are_never_counted(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await add_profiles(pool, bob)

    await set_settings(pool, [(ann, "email", True), (ann, "push", True)])
    await set_settings(pool, [(ann, "email", False)])
    await pool.execute("DELETE FROM user_notification_settings WHERE channel = 'push'")

    await assert_exact(pool, {})


async def test_a_settings_flip_moves_exactly_one_count(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await set_settings(pool, [(ann, "email", True), (bob, "email", True)])
    await add_profiles(pool, ann, bob)

    await set_settings(pool, [(ann, "email", False)])
    await assert_exact(pool, {("email", True): 1, ("email", False): 1})

    await set_settings(pool, [(ann, "email", False)])  # same value again: nothing moves
    await assert_exact(pool, {("email", True): 1, ("email", False): 1})


async def test_adding_and_deleting_a_setting_of_a_profiled_user(pool: asyncpg.Pool) -> None:
    (ann,) = await make_users(pool, 1)
    await add_profiles(pool, ann)

    await set_settings(pool, [(ann, "sms", True), (ann, "push", False)])
    await assert_exact(pool, {("sms", True): 1, ("push", False): 1})

    await pool.execute("DELETE FROM user_notification_settings WHERE channel = 'sms'")
    await assert_exact(pool, {("push", False): 1})


async def test_profile_delete_subtracts_the_users_settings(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await set_settings(pool, [(ann, "email", True), (ann, "sms", True), (bob, "email", True)])
    await add_profiles(pool, ann, bob)

    await pool.execute("DELETE FROM user_klaviyo_profiles WHERE user_id = $1", ann)

    await assert_exact(pool, {("email", True): 1})


async def test_deleting_users_cascades_through_both_tables_once(pool: asyncpg.Pool) -> None:
    ann, bob, cid = await make_users(pool, 3)
    await set_settings(pool, [(u, c, True) for u in (ann, bob, cid) for c in ("email", "sms")])
    await add_profiles(pool, ann, bob, cid)

    await pool.execute("DELETE FROM users WHERE id = ANY ($1::integer[])", [ann, bob])

    await assert_exact(pool, {("email", True): 1, ("sms", True): 1})


async def test_moving_a_profile_to_another_user_moves_the_counts(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await set_settings(pool, [(ann, "email", True), (bob, "email", False), (bob, "sms", True)])
    await add_profiles(pool, ann)

    await pool.execute("UPDATE user_klaviyo_profiles SET user_id = $1", bob)

    await assert_exact(pool, {("email", False): 1, ("sms", True): 1})


async def test_batches_match_the_true_count(pool: asyncpg.Pool) -> None:
    users = await make_users(pool, 60)
    channels = ("email", "sms", "push")
    await set_settings(
        pool, [(u, c, (u + i) % 3 == 0) for u in users for i, c in enumerate(channels)]
    )
    await add_profiles(pool, *users[::2])
    await set_settings(pool, [(u, "email", u % 2 == 0) for u in users])
    await pool.execute("DELETE FROM user_klaviyo_profiles WHERE user_id % 4 = 0")
    await add_profiles(pool, *users[1::6])

    truth = await recount(pool)
    assert sum(truth.values()) > 0
    await assert_exact(pool, truth)


@pytest.mark.parametrize(
    "first",
    [pytest.param("profile", id="profile first"), pytest.param("setting", id="setting first")],
)
async def test_concurrent_profile_and_setting_both_count(pool: asyncpg.Pool, first: str) -> None:
    """A profile insert and a settings insert for the same user in two open transactions:
    neither sees the other's row, so without serialization one of them would be missed."""
    (ann,) = await make_users(pool, 1)
    await set_settings(pool, [(ann, "email", True)])

    async def profile(conn: Executor) -> None:
        await add_profiles(conn, ann)

    async def setting(conn: Executor) -> None:
        await set_settings(conn, [(ann, "sms", True)])

    steps = {"profile": profile, "setting": setting}
    second = "setting" if first == "profile" else "profile"
    async with pool.acquire() as one, pool.acquire() as two:
        tx_one = one.transaction()
        await tx_one.start()
        await steps[first](one)
        tx_two = two.transaction()
        await tx_two.start()
        blocked = asyncio.create_task(steps[second](two))
        await wait_until_waiting_on_a_lock(one, two.get_server_pid())
        await tx_one.commit()
        await blocked
        await tx_two.commit()

    await assert_exact(pool, {("email", True): 1, ("sms", True): 1})


async def test_counts_never_go_negative_silently(pool: asyncpg.Pool) -> None:
    (ann,) = await make_users(pool, 1)
    await set_settings(pool, [(ann, "email", True)])
    await add_profiles(pool, ann)
    await pool.execute("UPDATE user_notification_setting_stats SET users = 0")

    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("DELETE FROM user_klaviyo_profiles")

    assert await pool.fetchval("SELECT count(*) FROM user_klaviyo_profiles") == 1


async def test_rebuild_and_truncate_recount_from_the_rows(pool: asyncpg.Pool) -> None:
    ann, bob = await make_users(pool, 2)
    await set_settings(pool, [(ann, "email", True), (bob, "push", False)])
    await add_profiles(pool, ann, bob)
    await pool.execute("UPDATE user_notification_setting_stats SET users = 7")

    await pool.execute("SELECT user_notification_setting_stats_rebuild()")
    await assert_exact(pool, {("email", True): 1, ("push", False): 1})

    await pool.execute("TRUNCATE user_notification_settings")
    await assert_exact(pool, {})


async def test_repeatable_read_is_refused_rather_than_miscounted(pool: asyncpg.Pool) -> None:
    (ann,) = await make_users(pool, 1)
    await add_profiles(pool, ann)

    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.FeatureNotSupportedError):
            async with conn.transaction(isolation="repeatable_read"):
                await set_settings(conn, [(ann, "email", True)])

    await assert_exact(pool, {})
