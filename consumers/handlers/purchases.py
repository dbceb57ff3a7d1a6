"""RevenueCat purchases as experiment conversions (docs/contract.md §6, Experiments).

A purchase (INITIAL_PURCHASE, RENEWAL, NON_RENEWING_PURCHASE, PRODUCT_CHANGE with a positive
``price`` in the PRODUCTION store environment) becomes a ``purchase`` conversion worth
``price`` for every experiment its buyer participates in. The buyer is bridged across the two
identity worlds: revenue cat id -> ``user_revenue_cat_ids`` -> ``users.email`` ->
``user_profiles`` with the same lower-cased email -> ``user_experiment_participation``.

Only participations exposed at or before the purchase, in experiments that count at the
purchase's time (:meth:`Experiment.refusal`), convert. The conversion id is
``uuid5(revenuecat event id, experiment id)``, so a redelivered purchase finds its conversion
already stored and adds nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from consumers.handlers.experiment_items import DEFAULT_WINDOW_DAYS, money
from consumers.handlers.experiment_plan import Batch, Conversion, Experiment, Key
from consumers.handlers.experiment_reads import participation_of
from consumers.handlers.experiment_store import write
from consumers.types import Context, Event

PURCHASE_TYPES = frozenset(
    {"INITIAL_PURCHASE", "RENEWAL", "NON_RENEWING_PURCHASE", "PRODUCT_CHANGE"}
)
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
)

# Every participation of every buyer in the batch, locked in key order.
SELECT_BUYER_PARTICIPATIONS = """
SELECT k.ord, p.user_id, p.experiment_id, p.variant_id, p.first_exposure_date,
       coalesce(p.has_converted, false) AS has_converted, p.first_conversion_date,
       coalesce(p.conversion_within_window, false) AS conversion_within_window,
       e.name, coalesce(e.is_active, true) AS is_active,
       coalesce(e.status::text, 'draft') AS status, e.started_at, e.ended_at
FROM unnest($1::text[], $2::int4[]) AS k(revenue_cat_id, ord)
JOIN user_revenue_cat_ids AS r ON r.revenue_cat_id = k.revenue_cat_id
JOIN users AS u ON u.id = r.user_id
JOIN user_profiles AS up ON lower(up.email) = lower(u.email)
JOIN user_experiment_participation AS p ON p.user_id = up.id
JOIN experiments AS e ON e.id = p.experiment_id
ORDER BY p.user_id, p.experiment_id
FOR UPDATE OF p
"""

SELECT_STORED_CONVERSIONS = "SELECT id FROM conversions WHERE id = ANY($1::uuid[])"


@dataclass(frozen=True, slots=True)
class Purchase:
    event_id: str
    at: datetime
    price: Decimal
    revenue_cat_ids: tuple[str, ...]
    details: Mapping[str, Any]


def purchase_of(event: Event) -> Purchase | None:
    """The purchase an applied RevenueCat event describes, or None if it is not one."""
    data = event.data
    if not isinstance(data, Mapping) or data.get("type") not in PURCHASE_TYPES:
        return None
    if data.get("environment") != "PRODUCTION":
        return None  # sandbox purchases are test purchases, not revenue
    raw_price = data.get("price")
    if isinstance(raw_price, bool) or not isinstance(raw_price, int | float) or raw_price <= 0:
        return None
    try:
        price = money(raw_price)
    except ValueError:
        return None
    if price <= 0:
        return None
    ids = [data.get("app_user_id"), data.get("original_app_user_id")]
    aliases = data.get("aliases")
    if isinstance(aliases, list):
        ids.extend(aliases)
    revenue_cat_ids = tuple(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
    details = {"revenuecat_event_id": event.id, "revenuecat_event_type": data["type"]}
    details.update({name: data[name] for name in _DETAIL_FIELDS if data.get(name) is not None})
    return Purchase(event.id, event.time, price, revenue_cat_ids, details)


def conversion_id(revenuecat_event_id: str, experiment_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(CONVERSION_NAMESPACE, f"{revenuecat_event_id}/{experiment_id}")


def purchase_conversion(purchase: Purchase, key: Key) -> Conversion:
    user_id, experiment_id = key
    return Conversion(
        id=conversion_id(purchase.event_id, experiment_id),
        user_id=user_id,
        experiment_id=experiment_id,
        at=purchase.at,
        conversion_type=PURCHASE_CONVERSION_TYPE,
        window_days=DEFAULT_WINDOW_DAYS,
        value=purchase.price,
        columns={"details": purchase.details, "conversion_attribution_source": ATTRIBUTION_SOURCE},
    )


async def record_purchases(conn: asyncpg.Connection, events: Sequence[Event], ctx: Context) -> None:
    """Turn applied RevenueCat purchase events into conversions for every experiment the
    purchasing person participates in. Called by the RevenueCat handler inside its transaction
    with the events it applied; events that are not purchases are ignored."""
    purchases = [p for p in map(purchase_of, events) if p is not None]
    pairs = [(rc_id, ord_) for ord_, p in enumerate(purchases) for rc_id in p.revenue_cat_ids]
    if not pairs:
        return
    rows = await conn.fetch(
        SELECT_BUYER_PARTICIPATIONS, [rc for rc, _ in pairs], [o for _, o in pairs]
    )
    if not rows:
        return
    experiments: dict[uuid.UUID, Experiment] = {}
    per_purchase: dict[int, dict[Key, None]] = {}
    participations = {}
    for row in rows:
        part = participation_of(row)
        participations[part.key] = part
        per_purchase.setdefault(row["ord"], {})[part.key] = None
        experiments[part.experiment_id] = Experiment(
            row["experiment_id"],
            row["name"],
            row["is_active"],
            row["status"],
            row["started_at"],
            row["ended_at"],
        )
    candidates = [
        (purchase, key)
        for ord_, purchase in enumerate(purchases)
        for key in sorted(per_purchase.get(ord_, {}))
        if experiments[key[1]].refusal(purchase.at) is None
    ]
    stored = {
        r["id"]
        for r in await conn.fetch(
            SELECT_STORED_CONVERSIONS,
            [conversion_id(p.event_id, key[1]) for p, key in candidates],
        )
    }
    batch = Batch(participations.values())
    for purchase, key in candidates:
        conversion = purchase_conversion(purchase, key)
        if conversion.id not in stored:
            # Pending results (purchase before first exposure) are simply not conversions.
            batch.conversion(conversion)
            stored.add(conversion.id)
    await write(conn, batch)
