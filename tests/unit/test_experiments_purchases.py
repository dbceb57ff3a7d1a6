"""Which RevenueCat events are purchases, and the deterministic conversion ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from consumers.handlers.purchases import conversion_id, purchase_conversion, purchase_of
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
        **fields,
    }
    return Event("revenuecat", "rc-1", f"revenuecat.{data['type']}", T, "u_rc_0", data)


@pytest.mark.parametrize(
    "kind", ["INITIAL_PURCHASE", "RENEWAL", "NON_RENEWING_PURCHASE", "PRODUCT_CHANGE"]
)
def test_purchase_types(kind: str) -> None:
    purchase = purchase_of(event(type=kind))
    assert purchase is not None
    assert (purchase.price, purchase.at) == (Decimal("9.99"), T)
    assert purchase.revenue_cat_ids == ("u_rc_1", "u_rc_0", "u_rc_2")
    assert purchase.details["revenuecat_event_type"] == kind
    assert purchase.details["product_id"] == "pro"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"type": "CANCELLATION"}, id="cancellation"),
        pytest.param({"type": "EXPIRATION"}, id="expiration"),
        pytest.param({"environment": "SANDBOX"}, id="sandbox"),
        pytest.param({"environment": None}, id="no environment"),
        pytest.param({"price": 0}, id="free"),
        pytest.param({"price": -4.99}, id="refund"),
        pytest.param({"price": 0.001}, id="rounds to zero"),
        pytest.param({"price": "9.99"}, id="price as text"),
        pytest.param({"price": None}, id="no price"),
        pytest.param({"price": 1e12}, id="overflows numeric(10,2)"),
    ],
)
def test_not_purchases(fields: dict[str, Any]) -> None:
    assert purchase_of(event(**fields)) is None


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
