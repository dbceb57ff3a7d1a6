"""The experiment edge cases of docs/contract.md §6 that used to lose or misfile events:
a purchase before its buyer's participation (and its work parked by earlier versions), two
transactions racing to create the same first
participation, a completed experiment's parked events, a late earlier impression, and the
token foreign keys the seed does not have."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta

import asyncpg

from consumers import db
from consumers.apply import apply_in_transaction
from consumers.handlers.experiments import ExperimentsHandler
from consumers.handlers.purchases import PURCHASE_WORK_TYPE
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.pending import store as pending_store
from consumers.pending.retry import PendingRetry
from consumers.types import Event, Handler, PendingEvent
from tests.integration.experiments_helpers import (
    apply,
    at,
    context,
    create_experiment,
    create_profile,
    events,
    item,
    participation,
)
from tests.integration.test_experiments_purchases import PRODUCTION, make_buyer, purchase
from tests.support import PENDING, retry_for

HANDLERS: dict[str, Handler] = {"revenuecat": RevenueCatHandler(), "app": ExperimentsHandler()}


def retry(pool: asyncpg.Pool, environment: str = "production", scope: str = "") -> PendingRetry:
    return retry_for(pool, HANDLERS, environment=environment, scope=scope)


async def apply_live(pool: asyncpg.Pool, event: Event, scope: str = "") -> list[str]:
    """Apply ``event`` as the loop of a production runtime in ``scope`` does."""
    report = await apply_in_transaction(
        pool, HANDLERS, [event], PRODUCTION, scope=scope, backoff_max_s=PENDING.backoff_max_s
    )
    return [s.disposition.value for s in report.settled]


async def test_a_purchase_before_the_participation_converts_once_it_appears(
    pool: asyncpg.Pool,
) -> None:
    buyer = await make_buyer(pool)
    checkout = await create_experiment(pool, "checkout")
    bought = purchase(at(2))
    assert await apply_live(pool, bought) == ["applied"]
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    assert await pool.fetchval("SELECT kind FROM ingest_revenuecat_ledger") == "purchase"

    # The impression (exposed before the purchase) arrives late, through its own topic: the
    # participation it creates converts the purchase of the ledger at once.
    await apply(pool, events(item("impression", buyer, at(0), variant="treatment")))
    redelivered = await apply_live(pool, bought)

    assert redelivered == ["duplicate"]
    rows = await pool.fetch("SELECT experiment_id, variant_id, conversion_type FROM conversions")
    assert [tuple(r) for r in rows] == [
        (checkout.experiment, checkout.variants["treatment"], "purchase")
    ]
    part = await participation(pool, buyer)
    assert part is not None and part["has_converted"]
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0


async def test_purchase_work_parked_before_the_ledger_converts_when_retried(
    pool: asyncpg.Pool,
) -> None:
    """A row parked as `<event id>/purchase` by an earlier version records its purchase in
    the ledger when retried, and converts like a live one."""
    buyer = await make_buyer(pool)
    checkout = await create_experiment(pool, "checkout")
    bought = purchase(at(2))
    work = replace(bought, id=f"{bought.id}/purchase", type=PURCHASE_WORK_TYPE, position=None)
    async with db.transaction(pool) as conn:
        await pending_store.park(
            conn,
            [PendingEvent(work, "purchase before participation", ())],
            "crm",
            max_s=PENDING.backoff_max_s,
        )
    await apply(pool, events(item("impression", buyer, at(0), variant="treatment")))

    assert (await retry(pool, scope="crm").run()).totals()["applied"] == 1
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    assert await pool.fetchval("SELECT event_id FROM ingest_revenuecat_ledger") == bought.id
    conversion = await pool.fetchrow("SELECT experiment_id, conversion_type FROM conversions")
    assert conversion is not None
    assert tuple(conversion) == (checkout.experiment, "purchase")
    # The live event, delivered now, finds its purchase converted already.
    assert await apply_live(pool, bought) == ["applied"]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 1


async def test_two_transactions_creating_the_same_participation_make_one_first_exposure(
    pool: asyncpg.Pool,
) -> None:
    user = await create_profile(pool, "race@example.com")
    seeded = await create_experiment(pool, "checkout")
    control = events(item("impression", user, at(0), variant="control"))
    treatment = events(item("impression", user, at(1), variant="treatment"))
    handler = ExperimentsHandler()

    async with db.transaction(pool) as first:
        await handler.apply(first, control, context())

        async def second() -> None:
            async with db.transaction(pool) as conn:
                await handler.apply(conn, treatment, context())

        racing = asyncio.create_task(second())

        async def waiting_on_lock() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )

        for _ in range(400):
            if racing.done() or await waiting_on_lock():
                break
            await asyncio.sleep(0.025)
        assert not racing.done(), "the second transaction planned without waiting"
    await racing

    rows = await pool.fetch(
        "SELECT variant_id, is_first_exposure, user_was_eligible FROM impressions"
        " ORDER BY impression_at"
    )
    assert [tuple(r) for r in rows] == [
        (seeded.variants["control"], True, True),
        (seeded.variants["treatment"], False, False),
    ]
    part = await participation(pool, user)
    assert part is not None
    assert (part["variant_id"], part["total_impressions"]) == (seeded.variants["control"], 1)


async def test_a_completed_experiment_still_takes_events_from_while_it_ran(
    pool: asyncpg.Pool,
) -> None:
    seeded = await create_experiment(
        pool,
        "finished",
        status="completed",
        is_active=False,
        started_at=at(-10 * 24),
        ended_at=at(24),
    )
    user = uuid.uuid4()  # no profile yet: parked
    during = item("impression", user, at(0), experiment="finished")
    after = item("impression", user, at(48), experiment="finished")
    report = await apply_in_transaction(
        pool, HANDLERS, events(during, after), context(), backoff_max_s=PENDING.backoff_max_s
    )
    assert [(s.disposition.value, s.reason) for s in report.settled] == [
        ("pending", "unknown user"),
        ("skipped", "experiment ended"),
    ]

    await pool.execute(
        "INSERT INTO user_profiles (id, email) VALUES ($1, 'done@example.com')", user
    )
    done = await retry(pool, "dev").run_pass()

    assert done.totals()["applied"] == 1
    part = await participation(pool, user)
    assert part is not None and part["variant_id"] == seeded.variants["control"]


async def test_an_earlier_late_impression_recomputes_time_to_convert_and_the_window(
    pool: asyncpg.Pool,
) -> None:
    user = await create_profile(pool, "late@example.com")
    await create_experiment(pool, "checkout")
    await apply(
        pool,
        events(
            item("impression", user, at(days=10)),
            item("conversion", user, at(days=12), conversion_window_days=7),
        ),
    )
    before = await pool.fetchrow("SELECT time_to_convert FROM conversions")
    assert before is not None and before["time_to_convert"] == int(
        timedelta(days=2).total_seconds()
    )
    converted = await participation(pool, user)
    assert converted is not None and converted["conversion_within_window"] is True

    await apply(pool, events(item("impression", user, at(days=0))))

    conversion = await pool.fetchrow(
        "SELECT c.time_to_convert, c.original_exposure_date, a.time_to_conversion_hours"
        " FROM conversions c JOIN conversion_attribution a ON a.conversion_id = c.id"
    )
    assert conversion is not None
    assert conversion["time_to_convert"] == int(timedelta(days=12).total_seconds())
    assert conversion["original_exposure_date"] == at(days=0)
    assert conversion["time_to_conversion_hours"] == 12 * 24
    part = await participation(pool, user)
    assert part is not None
    assert (part["first_exposure_date"], part["conversion_within_window"]) == (at(days=0), False)


async def test_the_token_columns_have_no_foreign_keys_the_seed_does_not_list(
    pool: asyncpg.Pool,
) -> None:
    referenced = await pool.fetch(
        "SELECT a.attname FROM pg_constraint c"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)"
        " WHERE c.conrelid = 'email_verification_tokens'::regclass AND c.contype = 'f'"
    )
    # Seed 002 names only the profile as a foreign key of a token.
    assert [r["attname"] for r in referenced] == ["user_profile_id"]
    user = await create_profile(pool, "token@example.com")
    in_flight = uuid.uuid4()
    await pool.execute(
        "INSERT INTO email_verification_tokens (user_profile_id, token, email, expires_at,"
        " experiment_id, variant_id, impression_id) VALUES ($1, 't', 'token@example.com',"
        " now(), $2, $2, $2)",
        user,
        in_flight,
    )
