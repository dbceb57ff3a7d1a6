"""Who a RevenueCat customer is on the experiments side, and the per-person locks.

The two identity worlds meet by email (docs/schema.md, "Two identity worlds"): revenue cat
id -> ``user_revenue_cat_ids`` -> ``users.email`` -> the ``user_profiles`` with the same
same email match key (``ingest_email_key``, docs/schema.md "Matching emails") -> its
participations.

Every transaction that reads or writes a person's participations together with the ledger
(the experiments consumer creating or moving a participation, the RevenueCat consumer
recording a purchase, a refund or an enrolment) first takes that person's advisory lock
(``ingest_lock_buyers``, sql/0008), in one statement and key order. Under READ COMMITTED the
second transaction's later statements then see what the first committed: a purchase and a
participation committed at the same moment cannot miss each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from consumers.handlers.experiment_plan import Experiment, Participation
from consumers.handlers.experiment_reads import participation_of

# The people behind the revenue cat ids of a batch, per position ($2) of the id list.
SELECT_BUYERS = """
SELECT DISTINCT k.ord, ingest_email_key(u.email) AS email, up.id AS profile_id
FROM unnest($1::text[], $2::int4[]) AS k(revenue_cat_id, ord)
JOIN user_revenue_cat_ids AS r ON r.revenue_cat_id = k.revenue_cat_id
JOIN users AS u ON u.id = r.user_id
LEFT JOIN user_profiles AS up ON ingest_email_key(up.email) = ingest_email_key(u.email)
"""

LOCK_EMAILS = "SELECT ingest_lock_buyers($1::text[])"
LOCK_PROFILES = """
SELECT ingest_lock_buyers(ARRAY(SELECT email FROM user_profiles WHERE id = ANY($1::uuid[])))
"""

# Every participation of those people, locked in key order, with its experiment.
SELECT_PARTICIPATIONS = """
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


def identifiers(event: Mapping[str, Any]) -> list[str]:
    """The revenue cat ids a RevenueCat event speaks for, most specific first, without
    repeats. A TRANSFER names none of its own; it touches the ids on both sides."""
    found: list[str] = []
    candidates: list[Any] = [event.get("app_user_id"), event.get("original_app_user_id")]
    for key in ("aliases", "transferred_to", "transferred_from"):
        values = event.get(key)
        if isinstance(values, list):
            candidates.extend(values)
    for value in candidates:
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found


@dataclass(slots=True)
class Buyer:
    """The person behind one event's revenue cat ids (several, when ids were merged)."""

    emails: set[str] = field(default_factory=set)  # match keys of users.email
    profiles: set[uuid.UUID] = field(default_factory=set)


async def resolve(conn: asyncpg.Connection, ids: Sequence[Sequence[str]]) -> list[Buyer]:
    """The buyer of each entry of ``ids`` (one list of revenue cat ids per event), in order;
    an empty :class:`Buyer` when none of its ids is known."""
    pairs = [(rc_id, n) for n, entry in enumerate(ids) for rc_id in entry]
    buyers = [Buyer() for _ in ids]
    if not pairs:
        return buyers
    for row in await conn.fetch(SELECT_BUYERS, [p for p, _ in pairs], [n for _, n in pairs]):
        buyer = buyers[row["ord"]]
        buyer.emails.add(row["email"])
        if row["profile_id"] is not None:
            buyer.profiles.add(row["profile_id"])
    return buyers


async def lock_emails(conn: asyncpg.Connection, emails: Iterable[str]) -> None:
    wanted = sorted(set(emails))
    if wanted:
        await conn.execute(LOCK_EMAILS, wanted)


async def lock_profiles(conn: asyncpg.Connection, profiles: Iterable[uuid.UUID]) -> None:
    wanted = sorted(set(profiles))
    if wanted:
        await conn.execute(LOCK_PROFILES, wanted)


async def participations(
    conn: asyncpg.Connection, profiles: Iterable[uuid.UUID]
) -> tuple[list[Participation], dict[uuid.UUID, Experiment]]:
    """Every participation of ``profiles`` (locked), and their experiments by id."""
    wanted = sorted(set(profiles))
    if not wanted:
        return [], {}
    rows = await conn.fetch(SELECT_PARTICIPATIONS, wanted)
    experiments = {
        r["experiment_id"]: Experiment(
            r["experiment_id"],
            r["name"],
            r["is_active"],
            r["status"],
            r["started_at"],
            r["ended_at"],
        )
        for r in rows
    }
    return [participation_of(r) for r in rows], experiments
