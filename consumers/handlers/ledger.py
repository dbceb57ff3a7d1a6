"""The RevenueCat ledger (``ingest_revenuecat_ledger``, sql/0008): every purchase, refund and
refund reversal that counts as revenue, kept so that the conversions do not depend on which
topic is applied first (docs/experiments.md, "Under lag and concurrency").

A purchase converts in the participations exposed before it that exist when it applies; a
participation that a later batch creates, moves to an earlier first exposure or to another
variant converts the ledger's purchases made since (:func:`ledger_candidates`). Both paths
derive the same conversion id, so each (purchase, experiment) converts once.

Callers hold the buyers' locks (:mod:`consumers.handlers.buyers`) before they read
participations or the ledger, so a purchase and a participation committed at the same moment
always see each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence

import asyncpg
import orjson

from consumers.handlers.experiment_plan import Experiment, Key, Plan
from consumers.handlers.purchases import PURCHASE, Money, conversion_id, counts, plan_conversions

RECORD = """
INSERT INTO ingest_revenuecat_ledger
    (event_id, kind, revenue_cat_ids, occurred_at, amount, transaction_id, details)
SELECT e, k, ARRAY(SELECT jsonb_array_elements_text(i::jsonb)), t, a, x, d::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::numeric[],
            $6::text[], $7::text[]) AS v(e, k, i, t, a, x, d)
ON CONFLICT (event_id) DO NOTHING
"""

# The ledger purchases of the given profiles: profile -> users by email -> revenue cat ids.
SELECT_PURCHASES_OF_PROFILES = """
SELECT DISTINCT k.profile_id, l.event_id, l.kind, l.revenue_cat_ids, l.occurred_at, l.amount,
       l.transaction_id, l.details::text AS details
FROM unnest($1::uuid[]) AS k(profile_id)
JOIN user_profiles AS up ON up.id = k.profile_id
JOIN users AS u ON ingest_email_key(u.email) = ingest_email_key(up.email)
JOIN user_revenue_cat_ids AS r ON r.user_id = u.id
JOIN ingest_revenuecat_ledger AS l ON l.revenue_cat_ids @> ARRAY[r.revenue_cat_id]
WHERE l.kind = 'purchase'
"""

SELECT_STORED_CONVERSIONS = "SELECT id FROM conversions WHERE id = ANY($1::uuid[])"


def money_of_row(row: asyncpg.Record) -> Money:
    return Money(
        row["kind"],
        row["event_id"],
        row["occurred_at"],
        row["amount"],
        tuple(row["revenue_cat_ids"]),
        row["transaction_id"],
        orjson.loads(row["details"]),
    )


async def record(conn: asyncpg.Connection, entries: Sequence[Money]) -> None:
    """Keep ``entries`` in the ledger; an entry already there (a redelivery) changes nothing."""
    if not entries:
        return
    await conn.execute(
        RECORD,
        [m.event_id for m in entries],
        [m.kind for m in entries],
        [orjson.dumps(list(m.revenue_cat_ids)).decode() for m in entries],
        [m.at for m in entries],
        [m.amount for m in entries],
        [m.transaction_id for m in entries],
        [orjson.dumps(m.details).decode() for m in entries],
    )


async def purchases_of(
    conn: asyncpg.Connection, profiles: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[Money]]:
    """The ledger's purchases of each profile's person, oldest first."""
    wanted = sorted(set(profiles))
    if not wanted:
        return {}
    found: dict[uuid.UUID, list[Money]] = {}
    for row in await conn.fetch(SELECT_PURCHASES_OF_PROFILES, wanted):
        found.setdefault(row["profile_id"], []).append(money_of_row(row))
    for entries in found.values():
        entries.sort(key=lambda m: (m.at, m.event_id))
    return found


async def ledger_candidates(
    conn: asyncpg.Connection, keys: Sequence[Key]
) -> list[tuple[Money, Key]]:
    """(purchase, participation) pairs of the ledger's purchases of the people of ``keys``
    in those participations (the ones a batch exposed earlier)."""
    by_profile = await purchases_of(conn, (user for user, _ in keys))
    return [(purchase, key) for key in keys for purchase in by_profile.get(key[0], ())]


async def convert(
    conn: asyncpg.Connection,
    plan: Plan,
    experiments: Mapping[uuid.UUID, Experiment],
    candidates: Iterable[tuple[Money, Key]],
) -> list[Money]:
    """Plan the conversions of the candidate pairs that count and are not stored yet (one
    read of the stored ids); returns the purchases that converted."""
    pairs = [
        (purchase, key)
        for purchase, key in candidates
        if purchase.kind == PURCHASE and counts(purchase, key, plan, experiments)
    ]
    if not pairs:
        return []
    ids = sorted({conversion_id(p.event_id, key[1]) for p, key in pairs})
    stored = {r["id"] for r in await conn.fetch(SELECT_STORED_CONVERSIONS, ids)}
    pairs.sort(key=lambda pair: (pair[1], pair[0].at, pair[0].event_id))
    return plan_conversions(plan, pairs, stored)
