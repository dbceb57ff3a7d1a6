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

A purchase whose buyer has no participation exposed by then (the impression may still be on
its way: the topics lag independently) is not lost: its conversion work is parked as an event
of its own (type :data:`PURCHASE_WORK_TYPE`, id ``<event id>/purchase``) waiting for the
buyer's participation, and converts when it appears. The RevenueCat event itself is applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from consumers.handlers.experiment_items import DEFAULT_WINDOW_DAYS, money
from consumers.handlers.experiment_plan import Conversion, Experiment, Key, Plan
from consumers.handlers.experiment_reads import participation_of
from consumers.handlers.experiment_store import write
from consumers.pending import waits
from consumers.types import APPLIED, Context, Event, Result, pending

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

PURCHASE_WORK_TYPE = "revenuecat.purchase_conversion"
WORK_SUFFIX = "/purchase"
NO_PARTICIPATION = "purchase before participation"

# The buyers of the batch: their email, and their profile when they have one.
SELECT_BUYERS = """
SELECT DISTINCT k.ord, lower(u.email) AS email, up.id AS profile_id
FROM unnest($1::text[], $2::int4[]) AS k(revenue_cat_id, ord)
JOIN user_revenue_cat_ids AS r ON r.revenue_cat_id = k.revenue_cat_id
JOIN users AS u ON u.id = r.user_id
LEFT JOIN user_profiles AS up ON lower(up.email) = lower(u.email)
"""

# Every participation of those buyers, locked in key order.
SELECT_BUYER_PARTICIPATIONS = """
SELECT p.user_id, p.experiment_id, p.variant_id, p.first_exposure_date,
       coalesce(p.has_converted, false) AS has_converted, p.first_conversion_date,
       coalesce(p.conversion_within_window, false) AS conversion_within_window,
       e.name, coalesce(e.is_active, true) AS is_active,
       coalesce(e.status::text, 'draft') AS status, e.started_at, e.ended_at
FROM user_experiment_participation AS p
JOIN experiments AS e ON e.id = p.experiment_id
WHERE p.user_id = ANY($1::uuid[])
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
    event_id = event.id.removesuffix(WORK_SUFFIX) if is_work(event) else event.id
    details = {"revenuecat_event_id": event_id, "revenuecat_event_type": data["type"]}
    details.update({name: data[name] for name in _DETAIL_FIELDS if data.get(name) is not None})
    return Purchase(event_id, event.time, price, revenue_cat_ids, details)


def is_work(event: Event) -> bool:
    """Whether ``event`` is the parked conversion work of a purchase, not a RevenueCat event."""
    return event.type == PURCHASE_WORK_TYPE


def work_event(event: Event) -> Event:
    """The parked conversion work of a purchase event."""
    return replace(event, id=event.id + WORK_SUFFIX, type=PURCHASE_WORK_TYPE, position=None)


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


async def record_purchases(
    conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
) -> dict[str, Result]:
    """Turn applied RevenueCat purchase events (and parked purchase work) into conversions for
    every experiment the purchasing person participates in. Called by the RevenueCat handler
    inside its transaction; events that are not purchases are ignored. Returns, by event id,
    a pending result for each purchase with no participation to convert yet (the caller
    returns its work as a follow-up, for the runtime to park) and APPLIED for the others."""
    purchases = [(e.id, p) for e in events if (p := purchase_of(e)) is not None]
    pairs = [(rc_id, o) for o, (_, p) in enumerate(purchases) for rc_id in p.revenue_cat_ids]
    if not pairs:
        return {}
    buyers = await conn.fetch(SELECT_BUYERS, [rc for rc, _ in pairs], [o for _, o in pairs])
    profiles: dict[int, set[uuid.UUID]] = {}
    emails: dict[int, set[str]] = {}
    for row in buyers:
        emails.setdefault(row["ord"], set()).add(row["email"])
        if row["profile_id"] is not None:
            profiles.setdefault(row["ord"], set()).add(row["profile_id"])
    every = sorted({p for ps in profiles.values() for p in ps})
    rows = await conn.fetch(SELECT_BUYER_PARTICIPATIONS, every) if every else []
    experiments: dict[uuid.UUID, Experiment] = {}
    by_user: dict[uuid.UUID, list[Key]] = {}
    participations = {}
    for row in rows:
        part = participation_of(row)
        participations[part.key] = part
        by_user.setdefault(part.user_id, []).append(part.key)
        experiments[part.experiment_id] = Experiment(
            row["experiment_id"],
            row["name"],
            row["is_active"],
            row["status"],
            row["started_at"],
            row["ended_at"],
        )
    candidates = [
        (o, purchase, key)
        for o, (_, purchase) in enumerate(purchases)
        for key in sorted({k for u in profiles.get(o, ()) for k in by_user.get(u, ())})
        if experiments[key[1]].refusal(purchase.at) is None
    ]
    stored = {
        r["id"]
        for r in await conn.fetch(
            SELECT_STORED_CONVERSIONS,
            [conversion_id(p.event_id, key[1]) for _, p, key in candidates],
        )
    }
    plan = Plan(participations.values())
    converted: set[int] = set()
    for o, purchase, key in candidates:
        conversion = purchase_conversion(purchase, key)
        if conversion.id in stored:
            converted.add(o)
        elif plan.conversion(conversion) is APPLIED:
            stored.add(conversion.id)
            converted.add(o)
    await write(conn, plan)
    results: dict[str, Result] = {}
    for o, (event_id, _) in enumerate(purchases):
        participant = any(by_user.get(u) for u in profiles.get(o, ()))
        if o in converted or participant or o not in emails:
            # Converted, or the buyer's participations settle it (exposed later, or in
            # experiments that do not count it), or the buyer is unknown (the RevenueCat
            # event itself waits then).
            results[event_id] = APPLIED
            continue
        keys = [waits.key(waits.PARTICIPANT, u) for u in sorted(profiles.get(o, ()))]
        keys += [waits.key(waits.PROFILE_EMAIL, e) for e in sorted(emails[o])]
        results[event_id] = pending(NO_PARTICIPATION, *keys)
    return results
