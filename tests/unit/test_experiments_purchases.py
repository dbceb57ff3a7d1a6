"""Which RevenueCat events are purchases, refunds and reversals, the deterministic ids, and
which refund is in force for a transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from consumers.handlers.purchases import (
    PURCHASE,
    REFUND,
    REFUND_REVERSED,
    Money,
    conversion_id,
    money_of,
    purchase_conversion,
    purchase_of,
)
from consumers.handlers.refunds import Converted, deciding, refund_row
from consumers.types import Event

T = datetime(2024, 6, 1, tzinfo=UTC)


def event(**fields: Any) -> Event:
    data = {
        "id": "rc-1",
        "type": "INITIAL_PURCHASE",
        "app_user_id": "u_rc_1",
        "original_app_user_id": "u_rc_0",
        "aliases": ["u_rc_1", "u_rc_2", "", None],
        "price": 9.99,
        "environment": "PRODUCTION",
        "product_id": "pro",
        "transaction_id": "tx-1",
        **fields,
    }
    return Event("revenuecat", "rc-1", f"revenuecat.{data['type']}", T, "u_rc_0", data)


@pytest.mark.parametrize("kind", ["INITIAL_PURCHASE", "RENEWAL", "NON_RENEWING_PURCHASE"])
def test_purchase_types(kind: str) -> None:
    purchase = purchase_of(event(type=kind))
    assert purchase is not None
    assert (purchase.kind, purchase.amount, purchase.at) == (PURCHASE, Decimal("9.99"), T)
    assert purchase.revenue_cat_ids == ("u_rc_1", "u_rc_0", "u_rc_2")
    assert purchase.transaction_id == "tx-1"
    assert purchase.details["revenuecat_event_type"] == kind
    assert purchase.details["product_id"] == "pro"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"type": "CANCELLATION"}, id="cancellation"),
        pytest.param({"type": "EXPIRATION"}, id="expiration"),
        # A plan change is not a payment: the RENEWAL or INITIAL_PURCHASE after it is.
        pytest.param({"type": "PRODUCT_CHANGE"}, id="product change with a price"),
        pytest.param({"environment": "SANDBOX"}, id="sandbox"),
        pytest.param({"environment": None}, id="no environment"),
        pytest.param({"price": 0}, id="free"),
        pytest.param({"price": -4.99}, id="negative purchase"),
        pytest.param({"price": 0.001}, id="rounds to zero"),
        pytest.param({"price": "9.99"}, id="price as text"),
        pytest.param({"price": None}, id="no price"),
        pytest.param({"price": 1e12}, id="overflows numeric(10,2)"),
    ],
)
def test_not_purchases(fields: dict[str, Any]) -> None:
    assert purchase_of(event(**fields)) is None


REFUND_FIELDS = {"type": "CANCELLATION", "cancel_reason": "CUSTOMER_SUPPORT", "price": -9.99}


@pytest.mark.parametrize(
    ("fields", "kind", "amount"),
    [
        pytest.param(REFUND_FIELDS, REFUND, Decimal("9.99"), id="refund, amount positive"),
        pytest.param(
            {**REFUND_FIELDS, "price": -2.5}, REFUND, Decimal("2.50"), id="partial refund"
        ),
        pytest.param({"type": "REFUND_REVERSED", "price": 5.0}, REFUND_REVERSED, Decimal("0")),
        pytest.param({**REFUND_FIELDS, "cancel_reason": "UNSUBSCRIBE"}, None, None, id="unsub"),
        pytest.param({**REFUND_FIELDS, "price": 0}, None, None, id="refund without amount"),
        pytest.param({**REFUND_FIELDS, "environment": "SANDBOX"}, None, None, id="sandbox"),
    ],
)
def test_refunds_and_reversals(
    fields: dict[str, Any], kind: str | None, amount: Decimal | None
) -> None:
    found = money_of(event(**fields))
    assert (found and found.kind, found and found.amount) == (kind, amount)
    if found is not None:
        assert found.transaction_id == "tx-1"


def test_conversion_ids_are_deterministic_per_event_and_experiment() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert conversion_id("rc-1", a) == conversion_id("rc-1", a)
    assert len({conversion_id("rc-1", a), conversion_id("rc-1", b), conversion_id("rc-2", a)}) == 3


def test_purchase_conversion_row() -> None:
    purchase = purchase_of(event())
    assert purchase is not None
    user, experiment = uuid.uuid4(), uuid.uuid4()
    conversion = purchase_conversion(purchase, (user, experiment))
    assert conversion.id == conversion_id("rc-1", experiment)
    assert (conversion.conversion_type, conversion.value, conversion.window_days) == (
        "purchase",
        Decimal("9.99"),
        30,
    )
    assert conversion.columns["conversion_attribution_source"] == "revenuecat"


def money(kind: str, event_id: str, hours: float) -> Money:
    return Money(kind, event_id, T + timedelta(hours=hours), Decimal("1"), ("u",), "tx-1")


@pytest.mark.parametrize(
    ("entries", "in_force"),
    [
        pytest.param([money(PURCHASE, "p", 0)], None, id="no refund"),
        pytest.param([money(PURCHASE, "p", 0), money(REFUND, "r", 1)], "r", id="refunded"),
        pytest.param([money(REFUND, "r", 1), money(REFUND_REVERSED, "x", 2)], None, id="reversed"),
        pytest.param(
            [money(REFUND_REVERSED, "x", 2), money(REFUND, "r", 1)], None, id="reversal first"
        ),
        pytest.param(
            [money(REFUND, "r", 1), money(REFUND_REVERSED, "x", 2), money(REFUND, "r2", 3)],
            "r2",
            id="refunded again",
        ),
    ],
)
def test_the_latest_refund_or_reversal_decides(entries: list[Money], in_force: str | None) -> None:
    found = deciding(entries)
    assert (found.event_id if found else None) == in_force


def test_refund_row_copies_the_purchase_conversion() -> None:
    converted = Converted(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), T, 30, "p")
    refund = money(REFUND, "r", 5)
    row = refund_row(refund, converted)
    assert row == refund_row(refund, converted)  # the same id on every delivery
    assert (row.of, row.at, row.amount) == (converted, refund.at, Decimal("1"))
    assert row.details["refunded_conversion_id"] == str(converted.id)
    assert row.details["refunded_event_id"] == "p"
