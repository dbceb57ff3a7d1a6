"""rc-sync's reads and writes: customers with their person (docs/rc-sync.md names each
column), the intent written before a call, and the answer recorded after it.

Never inside a transaction that spans a call: :func:`write_intent` commits before the call,
:func:`settle` runs after the answer. The rows of ``user_revenue_cat_ids`` are locked in id
order, as the consumers lock them, and merged key by key by ``updated_at_ms`` with the
consumers' own merge, so a later webhook echoing what was set changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg
import orjson

from consumers import db
from consumers.handlers import attributes
from consumers.handlers.revenuecat import SELECT_ROWS, UPDATE_ROWS
from rcsync.model import Attributes, Customer, Ours, Settled

CUSTOMERS = """
SELECT r.id, r.revenue_cat_id, r.revenue_cat_attributes, u.email,
       k.first_name AS klaviyo_first_name, k.last_name AS klaviyo_last_name,
       p.first_name AS profile_first_name, s.intent, s.refused
FROM user_revenue_cat_ids AS r
JOIN users AS u ON u.id = r.user_id
LEFT JOIN user_klaviyo_profiles AS k ON k.user_id = u.id
LEFT JOIN LATERAL (
    SELECT q.first_name FROM user_profiles AS q
    WHERE lower(q.email) = lower(u.email) AND q.deleted_at IS NULL
    ORDER BY q.email = u.email DESC, q.created_at
    LIMIT 1
) AS p ON true
LEFT JOIN ingest_rc_sync AS s ON s.revenue_cat_id = r.revenue_cat_id
"""
BY_IDS = CUSTOMERS + "WHERE r.revenue_cat_id = ANY($1::text[])"
# Keyset pages in id order: each pass of the sweep costs the same, wherever it is.
PAGE = CUSTOMERS + "WHERE r.id > $1 ORDER BY r.id LIMIT $2"
LEFTOVERS = CUSTOMERS + "WHERE s.intent IS NOT NULL ORDER BY s.intent_at LIMIT $1"

# Only when no intent is open: the call it stands for must be answered first.
WRITE_INTENT = """
INSERT INTO ingest_rc_sync AS s (revenue_cat_id, intent, intent_at)
VALUES ($1, $2::jsonb, now())
ON CONFLICT (revenue_cat_id) DO UPDATE SET intent = EXCLUDED.intent, intent_at = now()
WHERE s.intent IS NULL
RETURNING 1
"""
CLOSE_INTENT = """
UPDATE ingest_rc_sync
SET intent = NULL, intent_at = NULL, synced_at = now(),
    refused = (refused - $2::text[]) || $3::jsonb
WHERE revenue_cat_id = $1
"""


def customer(row: asyncpg.Record) -> Customer:
    refused = orjson.loads(row["refused"]) if row["refused"] else {}
    return Customer(
        revenue_cat_id=row["revenue_cat_id"],
        stored=attributes.parse_stored(row["revenue_cat_attributes"]),
        ours=Ours(
            email=row["email"],
            klaviyo_first_name=row["klaviyo_first_name"],
            klaviyo_last_name=row["klaviyo_last_name"],
            profile_first_name=row["profile_first_name"],
        ),
        intent=orjson.loads(row["intent"]) if row["intent"] else None,
        refused={k: v for k, v in refused.items() if isinstance(v, str)},
    )


async def load(conn: asyncpg.Connection, revenue_cat_ids: Iterable[str]) -> dict[str, Customer]:
    rows = await conn.fetch(BY_IDS, sorted(set(revenue_cat_ids)))
    return {row["revenue_cat_id"]: customer(row) for row in rows}


async def page(pool: asyncpg.Pool, after_id: int, limit: int) -> list[tuple[int, Customer]]:
    """Up to ``limit`` customers after row id ``after_id``, in id order."""
    async with db.connection(pool) as conn:
        rows = await conn.fetch(PAGE, after_id, limit)
    return [(row["id"], customer(row)) for row in rows]


async def leftovers(pool: asyncpg.Pool, limit: int) -> list[Customer]:
    """Customers whose call was written down and never answered (a killed process)."""
    async with db.connection(pool) as conn:
        rows = await conn.fetch(LEFTOVERS, limit)
    return [customer(row) for row in rows]


async def write_intent(conn: asyncpg.Connection, revenue_cat_id: str, body: Attributes) -> bool:
    """Commit what is about to be sent; False when another intent is open, or the row is
    gone (deleted since it was read)."""
    try:
        written = await conn.fetchval(WRITE_INTENT, revenue_cat_id, orjson.dumps(body).decode())
    except asyncpg.ForeignKeyViolationError:
        return False
    return bool(written)


async def settle(
    pool: asyncpg.Pool,
    revenue_cat_ids: Sequence[str],
    body: Attributes,
    answer: Settled,
    now_s: float,
    timeout_s: float | None = None,
) -> None:
    """Record RevenueCat's answer in one transaction: the attributes it took merged into
    each row of ``revenue_cat_ids`` (the first is the one called for), the ones it refused
    remembered, the intent closed."""
    taken = {key: body[key] for key in answer.accepted if key in body}
    refused = {key: body[key].get("value") for key in answer.refused if key in body}
    async with db.transaction(pool, timeout_s) as conn:
        rows = await conn.fetch(SELECT_ROWS, list(revenue_cat_ids)) if taken else []
        merged = [(row["id"], _merged(row["revenue_cat_attributes"], taken, now_s)) for row in rows]
        if merged:
            await conn.execute(
                UPDATE_ROWS,
                [row_id for row_id, _ in merged],
                [text for _, text in merged],
                [now_s] * len(merged),
            )
        await conn.execute(
            CLOSE_INTENT, revenue_cat_ids[0], list(answer.accepted), orjson.dumps(refused).decode()
        )


def _merged(stored: str, taken: Attributes, now_s: float) -> str:
    merged, _ = attributes.merge(attributes.parse_stored(stored), taken, now_s * 1000.0)
    return attributes.dump(merged)
