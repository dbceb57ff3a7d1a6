"""What each class of RevenueCat event type does (docs/contract.md §6, RevenueCat): skipped
with a named reason, acknowledged without effect, or applied; never parked for good or
dead-lettered. One representative of each class, through the runtime."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from consumers.apply import apply_in_transaction
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.types import Handler
from tests.integration.experiments_helpers import at
from tests.integration.test_experiments_purchases import PRODUCTION, RC_ID, make_buyer, purchase
from tests.support import PENDING

HANDLERS: dict[str, Handler] = {"revenuecat": RevenueCatHandler()}
ATTRIBUTES = {"plan": {"value": "gold", "updated_at_ms": 1_700_000_000_000}}


async def deliver(pool: asyncpg.Pool, **fields: Any) -> tuple[str, str | None]:
    event = purchase(at(1), **fields)
    report = await apply_in_transaction(
        pool, HANDLERS, [event], PRODUCTION, backoff_max_s=PENDING.backoff_max_s
    )
    (settled,) = report.settled
    return settled.disposition.value, settled.reason


async def stored_attributes(pool: asyncpg.Pool) -> dict[str, Any]:
    text = await pool.fetchval(
        "SELECT revenue_cat_attributes FROM user_revenue_cat_ids WHERE revenue_cat_id = $1", RC_ID
    )
    return dict(orjson.loads(text))


async def test_a_dashboard_test_event_is_skipped_with_its_reason(pool: asyncpg.Pool) -> None:
    # Its customer is made up: applying it would park it until it expired.
    assert await deliver(pool, type="TEST", app_user_id="made-up", aliases=[]) == (
        "skipped",
        "revenuecat test event",
    )
    assert await pool.fetchval("SELECT reason FROM ingest_skipped") == "revenuecat test event"
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0


async def test_a_temporary_entitlement_grant_is_acknowledged_without_effect(
    pool: asyncpg.Pool,
) -> None:
    # Sample shape: an app user id and little else, for a customer not known yet.
    fields = {"type": "TEMPORARY_ENTITLEMENT_GRANT", "app_user_id": "not-yet", "aliases": []}
    assert await deliver(pool, **fields) == ("applied", None)
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    assert await pool.fetchval("SELECT count(*) FROM ingest_revenuecat_ledger") == 0


@pytest.mark.parametrize(
    "event_type",
    ["SUBSCRIBER_ALIAS", "INVOICE_ISSUANCE", "SUBSCRIPTION_EXTENDED", "A_TYPE_ADDED_LATER"],
)
async def test_other_types_are_applied_to_the_customer_rows(
    pool: asyncpg.Pool, event_type: str
) -> None:
    await make_buyer(pool)
    fields = {"type": event_type, "price": 0, "subscriber_attributes": ATTRIBUTES}
    assert await deliver(pool, **fields) == ("applied", None)
    assert (await stored_attributes(pool))["plan"]["value"] == "gold"
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 0


@pytest.mark.parametrize(
    ("purchase_environment", "expected"),
    [
        pytest.param("SANDBOX", ("skipped", "environment SANDBOX while production"), id="sandbox"),
        pytest.param("PRODUCTION", ("applied", None), id="production"),
    ],
)
async def test_a_virtual_currency_transaction_is_filtered_by_its_purchase_environment(
    pool: asyncpg.Pool, purchase_environment: str, expected: tuple[str, str | None]
) -> None:
    await make_buyer(pool)
    fields = {
        "type": "VIRTUAL_CURRENCY_TRANSACTION",
        "environment": None,
        "purchase_environment": purchase_environment,
        "adjustments": [{"amount": 100, "currency": {"code": "CRD", "name": "Credits"}}],
        "subscriber_attributes": ATTRIBUTES,
    }
    assert await deliver(pool, **fields) == expected
    applied = expected[0] == "applied"
    assert ("plan" in await stored_attributes(pool)) is applied
