"""RevenueCat purchases become experiment conversions through the email bridge
(revenue cat id -> users.email -> user_profiles by lower-cased email -> participations),
driven through the RevenueCat handler as the runtime calls it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from consumers import db
from consumers.decode import RawRecord, decode
from consumers.handlers.purchases import conversion_id
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.types import APPLIED, Context, Event, Result
from ingest.providers.revenuecat import build_records
from tests.integration.experiments_helpers import (
    RECEIVED_AT,
    apply,
    at,
    create_experiment,
    create_profile,
    events,
    item,
    participation,
)

RC_ID = "u_rc_ann"
PRODUCTION = Context(environment="production", now=datetime(2024, 6, 2, tzinfo=UTC))


def purchase(moment: datetime, **fields: Any) -> Event:
    event = {
        "id": str(uuid.uuid4()),
        "type": "INITIAL_PURCHASE",
        "app_user_id": RC_ID,
        "original_app_user_id": RC_ID,
        "aliases": [RC_ID],
        "price": 9.99,
        "currency": "USD",
        "product_id": "pro_monthly",
        "environment": "PRODUCTION",
        "event_timestamp_ms": int(moment.timestamp() * 1000),
        **fields,
    }
    (record,) = build_records({"api_version": "1.0", "event": event}, RECEIVED_AT)
    raw = RawRecord("ingest.revenuecat.v1", 0, 0, record.key, record.value, record.headers)
    return decode(raw)


async def apply_revenuecat(pool: asyncpg.Pool, batch: Sequence[Event]) -> list[Result]:
    async with db.transaction(pool) as conn:
        return await RevenueCatHandler().apply(conn, batch, PRODUCTION)


@pytest.fixture
async def buyer(pool: asyncpg.Pool) -> uuid.UUID:
    return await make_buyer(pool)


async def make_buyer(pool: asyncpg.Pool) -> uuid.UUID:
    """A person known on both sides: users/user_revenue_cat_ids and user_profiles, with
    emails that differ only in case."""
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ('u_ann', 'Ann@Example.COM') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids"
        " (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)"
        " VALUES ('iurc_ann', $1, $2, '{}', 0, 0)",
        user_id,
        RC_ID,
    )
    return await create_profile(pool, "ann@example.com")


async def conversions(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT c.*, a.conversion_value_attributed, a.attribution_method"
        " FROM conversions c JOIN conversion_attribution a ON a.conversion_id = c.id"
        " ORDER BY c.experiment_id"
    )


async def test_purchase_converts_every_participation_once(
    pool: asyncpg.Pool, buyer: uuid.UUID
) -> None:
    checkout = await create_experiment(pool, "checkout")
    pricing = await create_experiment(pool, "pricing", variants=("a", "b"))
    await apply(
        pool,
        events(
            item("impression", buyer, at(0), experiment="checkout", variant="treatment"),
            item("impression", buyer, at(0), experiment="pricing", variant="b"),
        ),
    )
    bought = purchase(at(2))
    assert await apply_revenuecat(pool, [bought]) == [APPLIED]

    rows = await conversions(pool)
    expected = {
        conversion_id(bought.id, checkout.experiment): checkout.variants["treatment"],
        conversion_id(bought.id, pricing.experiment): pricing.variants["b"],
    }
    assert {r["id"]: r["variant_id"] for r in rows} == expected
    for row in rows:
        assert row["user_id"] == buyer
        assert row["conversion_type"] == "purchase"
        assert row["conversion_value"] == Decimal("9.99")
        assert row["conversion_value_attributed"] == Decimal("9.99")
        assert row["attribution_method"] == "first_exposure"
        assert row["time_to_convert"] == 2 * 3600
        assert row["conversion_attribution_source"] == "revenuecat"
    part = await participation(pool, buyer)
    assert part is not None
    assert (part["has_converted"], part["first_conversion_date"]) == (True, at(2))

    # Applied again (as a replay into another scope would): nothing is added.
    assert await apply_revenuecat(pool, [bought]) == [APPLIED]
    assert len(await conversions(pool)) == 2
    assert await pool.fetchval("SELECT count(*) FROM conversion_attribution") == 2


async def test_renewal_is_a_second_not_first_conversion(
    pool: asyncpg.Pool, buyer: uuid.UUID
) -> None:
    await create_experiment(pool, "checkout")
    await apply(pool, events(item("impression", buyer, at(0))))
    await apply_revenuecat(pool, [purchase(at(1)), purchase(at(24 * 31), type="RENEWAL")])
    rows = await pool.fetch(
        "SELECT is_first_conversion_for_experiment AS first, time_to_convert"
        " FROM conversions ORDER BY created_at"
    )
    assert [(r["first"], r["time_to_convert"]) for r in rows] == [
        (True, 3600),
        (False, 31 * 24 * 3600),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"environment": "SANDBOX"}, id="sandbox store"),
        pytest.param({"price": 0}, id="free"),
        pytest.param({"type": "CANCELLATION", "price": -9.99}, id="not a purchase"),
    ],
)
async def test_events_that_are_not_revenue_add_no_conversion(
    pool: asyncpg.Pool, buyer: uuid.UUID, fields: dict[str, Any]
) -> None:
    await create_experiment(pool, "checkout")
    await apply(pool, events(item("impression", buyer, at(0))))
    await apply_revenuecat(pool, [purchase(at(1), **fields)])
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 0


async def test_purchase_counts_only_for_participations_exposed_before_it(
    pool: asyncpg.Pool, buyer: uuid.UUID
) -> None:
    early = await create_experiment(pool, "early")
    await create_experiment(pool, "late")
    await create_experiment(pool, "over", ended_at=at(1))
    await apply(
        pool,
        events(
            item("impression", buyer, at(0), experiment="early"),
            item("impression", buyer, at(5), experiment="late"),
            item("impression", buyer, at(0), experiment="over"),
        ),
    )
    await apply_revenuecat(pool, [purchase(at(2))])
    rows = await conversions(pool)
    assert [r["experiment_id"] for r in rows] == [early.experiment]


async def test_purchase_of_a_person_without_profile_changes_nothing(
    pool: asyncpg.Pool, buyer: uuid.UUID
) -> None:
    await create_experiment(pool, "checkout")
    other = await create_profile(pool, "bob@example.com")
    await apply(pool, events(item("impression", other, at(0))))
    await pool.execute("UPDATE users SET email = 'nobody@example.com'")
    assert await apply_revenuecat(pool, [purchase(at(2))]) == [APPLIED]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 0


async def test_plan_change_counts_the_payment_after_it_once(
    pool: asyncpg.Pool, buyer: uuid.UUID
) -> None:
    """RevenueCat sends PRODUCT_CHANGE (with the new product's price) when the plan changes,
    then the RENEWAL that takes the money: one payment, one conversion."""
    checkout = await create_experiment(pool, "checkout")
    await apply(pool, events(item("impression", buyer, at(0), experiment="checkout")))
    change = purchase(at(2), type="PRODUCT_CHANGE", price=19.99, product_id="pro_yearly")
    renewal = purchase(at(3), type="RENEWAL", price=19.99, product_id="pro_yearly")
    assert await apply_revenuecat(pool, [change, renewal]) == [APPLIED, APPLIED]

    rows = await conversions(pool)
    assert [(r["id"], r["conversion_value"]) for r in rows] == [
        (conversion_id(renewal.id, checkout.experiment), Decimal("19.99"))
    ]
    ledger = await pool.fetch("SELECT event_id FROM ingest_revenuecat_ledger")
    assert [r["event_id"] for r in ledger] == [renewal.id]
