"""Parked events at any count, against the real PostgreSQL (and the broker for the live loop):
a pass retries only what was woken or is due, backs off per row, expires old rows into
ingest_skipped, and runs beside the runner without holding it up."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from consumers.pending.policy import PendingPolicy
from consumers.pending.retry import PendingRetry
from consumers.pending.task import RetryTask
from consumers.registry import build_handlers
from contract.records import Record
from core.settings import Settings
from ingester.bookkeeping import pending_list, pending_retry
from tests.integration.experiments_helpers import create_experiment, create_profile, item, records
from tests.integration.test_consumers_handlers import (
    apply,
    consent_event,
    kit_event,
    new_user,
    rc_event,
    token,
)
from tests.integration.test_consumers_runner import kit_records, running, until
from tests.support import NO_DEAD_LETTERS, PENDING, publish, retry_for

WHEN = "2024-06-01T00:00:00Z"


def retry(pool: asyncpg.Pool, policy: PendingPolicy = PENDING) -> PendingRetry:
    return retry_for(pool, build_handlers(()), policy=policy)


@dataclass(frozen=True, slots=True)
class Case:
    """An event whose target is missing, the key it must wait for, and how the target
    appears."""

    records: Callable[[str], list[Record]]
    waits_for: Callable[[str], str]
    create: Callable[[asyncpg.Pool, str], Awaitable[None]]


async def _rc_target(pool: asyncpg.Pool, name: str) -> None:
    user_id, uid = await new_user(pool)
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids"
        " (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)"
        " VALUES ($1, $2, $3, '{}', 0, 0)",
        f"rc_{uid}",
        user_id,
        name,
    )


async def _profile_target(pool: asyncpg.Pool, name: str) -> None:
    await create_profile(pool, f"{name}@example.com")


async def _klaviyo_target(pool: asyncpg.Pool, name: str) -> None:
    user_id, uid = await new_user(pool)
    await pool.execute(
        "INSERT INTO user_klaviyo_profiles (uid, klaviyo_id, user_id, email, timezone,"
        " environment, created_at, updated_at) VALUES ($1, $2, $3, 'k@example.com', 'UTC',"
        " 'dev', 0, 0)",
        f"kp_{uid}",
        name,
        user_id,
    )


async def _experiment_target(pool: asyncpg.Pool, name: str) -> None:
    await create_experiment(pool, name, variants=("control",))


def _impression(name: str) -> list[Record]:
    # The user exists: the experiment is the one missing target.
    return records([item("impression", _USERS[name], datetime.now(UTC), experiment=name)])


_USERS: dict[str, uuid.UUID] = {}

CASES = [
    pytest.param(
        Case(lambda n: rc_event(n, 1_000), lambda n: f"revenuecat_id:{n}", _rc_target),
        id="revenuecat id",
    ),
    pytest.param(
        Case(
            lambda n: kit_event(f"{n}@example.com", "subscriber.activated", WHEN),
            lambda n: f"profile_email:{n}@example.com",
            _profile_target,
        ),
        id="profile email",
    ),
    pytest.param(
        Case(
            lambda n: consent_event(n, "email", True, WHEN),
            lambda n: f"klaviyo_id:{n}",
            _klaviyo_target,
        ),
        id="klaviyo profile",
    ),
    pytest.param(
        Case(_impression, lambda n: f"experiment:{n}", _experiment_target), id="experiment"
    ),
]


@pytest.mark.parametrize("case", CASES)
async def test_a_parked_event_applies_once_its_target_appears(
    pool: asyncpg.Pool, case: Case
) -> None:
    name = token().lower().replace("-", "x").replace("_", "y")
    _USERS[name] = await create_profile(pool, f"user-{name}@example.com")
    # Rows waiting for other keys: a pass must not touch them.
    bystanders = [
        r
        for i in range(20)
        for r in kit_event(f"nobody{i}@example.com", "subscriber.activated", WHEN)
    ]
    await apply(pool, bystanders)
    assert [d.value for d in await apply(pool, case.records(name))] == ["pending"]
    row = await pool.fetchrow(
        "SELECT next_attempt_at > now() AS later FROM ingest_pending WHERE $1 = ANY(waits_for)",
        case.waits_for(name),
    )
    assert row is not None and row["later"], "parked with a key and a first delay"

    passes = retry(pool)
    nothing = await passes.run_pass()
    assert nothing.totals() == {"applied": 0, "skipped": 0, "pending": 0, "dead": 0}

    await case.create(pool, name)
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending_wakes") > 0
    done = await passes.run_pass()

    assert (done.woken, done.totals()["applied"]) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending_wakes") == 0
    left = await pool.fetch("SELECT attempts, reason FROM ingest_pending")
    assert [(r["attempts"], r["reason"]) for r in left] == [(0, "unknown email")] * 20


async def test_a_row_still_waiting_backs_off_exponentially_up_to_the_cap(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, kit_event("late@example.com", "subscriber.activated", WHEN))
    passes = retry(pool, replace(PENDING, backoff_max_s=300.0))
    delays = []
    for _ in range(4):
        await pool.execute("UPDATE ingest_pending SET next_attempt_at = now() - interval '1 s'")
        report = await passes.run_pass()
        assert report.totals()["pending"] == 1
        delays.append(
            await pool.fetchval(
                "SELECT round(extract(epoch FROM next_attempt_at - last_attempt_at))::int"
                " FROM ingest_pending"
            )
        )
    assert delays == [120, 240, 300, 300]
    assert await pool.fetchval("SELECT attempts FROM ingest_pending") == 4


async def test_a_pass_stops_at_its_row_budget_and_the_next_one_goes_on(
    pool: asyncpg.Pool,
) -> None:
    await apply(
        pool,
        [r for i in range(7) for r in kit_event(f"b{i}@example.com", "subscriber.activated", WHEN)],
    )
    await pool.execute("UPDATE ingest_pending SET next_attempt_at = now()")
    passes = retry(pool)
    first = await passes.run_pass(replace(PENDING.budget, max_rows=5, chunk=2))
    assert (first.totals()["pending"], first.more) == (5, True)
    second = await passes.run_pass(replace(PENDING.budget, max_rows=5, chunk=2))
    assert (second.totals()["pending"], second.more) == (2, False)


async def test_rows_past_the_max_age_expire_into_skipped_and_can_be_replayed(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await apply(pool, kit_event("gone@example.com", "subscriber.activated", WHEN))
    await apply(pool, kit_event("young@example.com", "subscriber.activated", WHEN))
    await pool.execute(
        "UPDATE ingest_pending SET parked_at = now() - interval '31 days'"
        " WHERE payload::text LIKE '%gone@%'"
    )
    counter = ("consumer_pending_expired_total", {"reason": "unknown email"})
    before = REGISTRY.get_sample_value(*counter) or 0.0

    report = await retry(pool, replace(PENDING, max_age_days=30)).run_pass()

    assert report.expired == 1
    assert REGISTRY.get_sample_value(*counter) == before + 1
    skipped = await pool.fetchrow("SELECT reason, payload IS NOT NULL AS kept FROM ingest_skipped")
    assert skipped is not None and (skipped["reason"], skipped["kept"]) == (
        "expired: unknown email",
        True,
    )
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 1

    assert await pending_list(settings) == 0
    listed = capsys.readouterr().out
    assert "expired: unknown email\t1" in listed
    assert "pending retry --expired" in listed

    await create_profile(pool, "gone@example.com")
    assert await pending_retry(settings, expired=True) == 0
    assert "put back 1 expired event(s)" in capsys.readouterr().out
    assert await pool.fetchval("SELECT count(*) FROM ingest_skipped") == 0
    assert (
        await pool.fetchval("SELECT kit_state FROM user_profiles WHERE email = 'gone@example.com'")
        == "active"
    )


async def test_the_consumer_retries_parked_events_periodically(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.with_overrides(pending_retry_interval_s=0.1)
    email = f"{token().lower()}@example.com"
    await publish(
        settings.kafka_bootstrap_servers or "", settings.topic_prefix, kit_records(email, 2)
    )

    async def parked() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM ingest_pending") == 2)

    async def applied() -> bool:
        state = "SELECT kit_subscriber_id FROM user_profiles WHERE email = $1"
        return bool(await pool.fetchval(state, email) == "1")

    async def gauge_clear() -> bool:
        gauge = REGISTRY.get_sample_value("consumer_pending_events", {"reason": "unknown email"})
        return gauge is None

    async with running(settings, pool) as runner:
        task = RetryTask(
            PendingRetry.from_settings(settings, pool, runner.handlers, NO_DEAD_LETTERS)
        )
        stop = asyncio.Event()
        retrying = asyncio.create_task(task.run(stop))
        try:
            await until(parked, "both events parked")
            await pool.execute("INSERT INTO user_profiles (email) VALUES ($1)", email)
            await until(applied, "the periodic retry")
            await until(gauge_clear, "the gauge to clear")
        finally:
            stop.set()
            await retrying
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0


async def test_the_live_loop_keeps_committing_while_a_long_pass_runs(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    settings = settings.with_overrides(pending_retry_interval_s=0.05)
    in_pass = asyncio.Event()
    release = asyncio.Event()

    async def slow_pass() -> None:
        in_pass.set()
        await release.wait()  # the pass holds here until the live records are committed

    email = f"{token().lower()}@example.com"
    await pool.execute("INSERT INTO user_profiles (email) VALUES ($1)", email)
    async with running(settings, pool) as runner:
        task = RetryTask(
            PendingRetry.from_settings(settings, pool, runner.handlers, NO_DEAD_LETTERS),
            before_pass=slow_pass,
        )
        stop = asyncio.Event()
        retrying = asyncio.create_task(task.run(stop))
        try:
            await asyncio.wait_for(in_pass.wait(), 30)
            await publish(
                settings.kafka_bootstrap_servers or "", settings.topic_prefix, kit_records(email, 3)
            )

            async def committed() -> bool:
                tps: set[TopicPartition] = runner.consumer.assignment()
                offsets = [await runner.consumer.committed(tp) for tp in tps]
                return sum(o or 0 for o in offsets) >= 3

            await until(committed, "offsets committed during the pass")
            assert task.passes == 0, "the pass is still running"
            state = "SELECT kit_subscriber_id FROM user_profiles WHERE email = $1"
            assert await pool.fetchval(state, email) == "2"
        finally:
            release.set()
            stop.set()
            await retrying
    assert task.passes >= 1
