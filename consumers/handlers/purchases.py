"""RevenueCat money as experiment conversions: which events are purchases, refunds and
refund reversals, and the conversion a purchase makes (docs/experiments.md, "RevenueCat
purchases"). Pure: the SQL is in :mod:`consumers.handlers.ledger` and
:mod:`consumers.handlers.refunds`.

A purchase (INITIAL_PURCHASE, RENEWAL or NON_RENEWING_PURCHASE with a positive ``price`` in
the PRODUCTION store environment) becomes a ``purchase`` conversion worth
``price`` in every participation of its buyer exposed at or before it, in an experiment that
counts at the purchase's time (:meth:`Experiment.refusal`). The conversion id is
``uuid5(revenuecat event id, experiment id)``, so the same purchase converts once per
experiment whichever path (the purchase applying, or a participation appearing later) gets
there first.

A refund is a CANCELLATION with ``cancel_reason = CUSTOMER_SUPPORT`` and a negative
``price``; a REFUND_REVERSED undoes the refund of its transaction. Both name the refunded
transaction in ``transaction_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from consumers.handlers.buyers import identifiers
from consumers.handlers.environment import revenuecat_store_environment
from consumers.handlers.experiment_items import DEFAULT_WINDOW_DAYS, money
from consumers.handlers.experiment_plan import Conversion, Experiment, Key, Plan
from consumers.types import APPLIED, Event

# Not PRODUCT_CHANGE: RevenueCat sends it when a plan change is made, before any payment, and
# the money of the new product comes in the INITIAL_PURCHASE (Play Store) or RENEWAL (App
# Store) that follows; counting its ``price`` too would count one payment twice.
PURCHASE_TYPES = frozenset({"INITIAL_PURCHASE", "RENEWAL", "NON_RENEWING_PURCHASE"})
PURCHASE, REFUND, REFUND_REVERSED = "purchase", "refund", "refund_reversed"
PURCHASE_CONVERSION_TYPE = "purchase"
ATTRIBUTION_SOURCE = "revenuecat"
CONVERSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:webhook-ingester:revenuecat-purchase")
_DETAIL_FIELDS = (
    "product_id",
    "currency",
    "price_in_purchased_currency",
    "store",
    "transaction_id",
    "original_transaction_id",
    "period_type",
    "presented_offering_id",
    "cancel_reason",
)

# Conversion work parked by versions before the purchase ledger (``<event id>/purchase``):
# retried, it records its purchase in the ledger like a live one.
PURCHASE_WORK_TYPE = "revenuecat.purchase_conversion"
WORK_SUFFIX = "/purchase"


@dataclass(frozen=True, slots=True)
class Money:
    """A purchase, refund or refund reversal as the ledger keeps it."""

    kind: str  # PURCHASE | REFUND | REFUND_REVERSED
    event_id: str
    at: datetime
    amount: Decimal  # USD, never negative: a refund's refunded amount
    revenue_cat_ids: tuple[str, ...]
    transaction_id: str | None
    details: Mapping[str, Any] = field(default_factory=dict)


def _amount(value: Any) -> Decimal | None:
    """A price as numeric(10, 2), or None when it is not a usable number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return money(abs(value))
    except ValueError:
        return None


def _kind(data: Mapping[str, Any]) -> str | None:
    kind = data.get("type")
    price = data.get("price")
    positive = isinstance(price, int | float) and not isinstance(price, bool) and price > 0
    if kind in PURCHASE_TYPES:
        return PURCHASE if positive else None
    if kind == "CANCELLATION" and data.get("cancel_reason") == "CUSTOMER_SUPPORT":
        negative = isinstance(price, int | float) and not isinstance(price, bool) and price < 0
        return REFUND if negative else None
    if kind == "REFUND_REVERSED":
        return REFUND_REVERSED
    return None


def money_of(event: Event) -> Money | None:
    """The purchase, refund or reversal an applied RevenueCat event describes, or None.
    Sandbox events are test purchases, not revenue."""
    data = event.data
    if not isinstance(data, Mapping) or revenuecat_store_environment(data) != "PRODUCTION":
        return None
    kind = _kind(data)
    if kind is None:
        return None
    amount = _amount(data.get("price")) if kind != REFUND_REVERSED else Decimal("0.00")
    if amount is None or (kind != REFUND_REVERSED and amount <= 0):
        return None
    revenue_cat_ids = tuple(identifiers(data))
    event_id = event.id.removesuffix(WORK_SUFFIX) if is_work(event) else event.id
    details: dict[str, Any] = {
        "revenuecat_event_id": event_id,
        "revenuecat_event_type": data["type"],
    }
    details.update({name: data[name] for name in _DETAIL_FIELDS if data.get(name) is not None})
    transaction = data.get("transaction_id")
    transaction_id = transaction if isinstance(transaction, str) and transaction else None
    return Money(kind, event_id, event.time, amount, revenue_cat_ids, transaction_id, details)


def purchase_of(event: Event) -> Money | None:
    """The purchase an applied RevenueCat event describes, or None if it is not one."""
    found = money_of(event)
    return found if found is not None and found.kind == PURCHASE else None


def is_work(event: Event) -> bool:
    """Whether ``event`` is purchase work parked before the ledger, not a RevenueCat event."""
    return event.type == PURCHASE_WORK_TYPE


def conversion_id(revenuecat_event_id: str, experiment_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CONVERSION_NAMESPACE, f"{revenuecat_event_id}/{experiment_id}")


def purchase_conversion(purchase: Money, key: Key) -> Conversion:
    user_id, experiment_id = key
    return Conversion(
        id=conversion_id(purchase.event_id, experiment_id),
        user_id=user_id,
        experiment_id=experiment_id,
        at=purchase.at,
        conversion_type=PURCHASE_CONVERSION_TYPE,
        window_days=DEFAULT_WINDOW_DAYS,
        value=purchase.amount,
        columns={"details": purchase.details, "conversion_attribution_source": ATTRIBUTION_SOURCE},
    )


def counts(
    purchase: Money, key: Key, plan: Plan, experiments: Mapping[uuid.UUID, Experiment]
) -> bool:
    """Whether ``purchase`` converts in the participation ``key`` as the plan holds it:
    exposed at or before the purchase, in an experiment that counts at its time."""
    part = plan.participation(key)
    if part is None or purchase.at < part.first_exposure_date:
        return False
    experiment = experiments.get(key[1])
    return experiment is not None and experiment.refusal(purchase.at) is None


def plan_conversions(
    plan: Plan, candidates: Iterable[tuple[Money, Key]], stored: set[uuid.UUID]
) -> list[Money]:
    """Add to ``plan`` the conversion of each (purchase, participation) not in ``stored``
    (the candidates must count, see :func:`counts`); returns the purchases converted."""
    converted: dict[str, Money] = {}
    for purchase, key in candidates:
        conversion = purchase_conversion(purchase, key)
        if conversion.id in stored:
            continue
        if plan.conversion(conversion) is APPLIED:
            stored.add(conversion.id)
            converted[purchase.event_id] = purchase
    return list(converted.values())
