"""The statements of a retry pass beyond the bookkeeping in :mod:`consumers.store`: wake-ups,
expiry, replay of expired events, and the counts ``pending list`` prints.

Each touches only the rows it names through an index (``waits_for`` GIN, ``parked_at``,
``next_attempt_at``, the replayable part of ``ingest_skipped``) and at most ``limit`` of them,
so a pass costs what became ready, not what is parked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

EXPIRED_PREFIX = "expired: "

# One pass at a time consumes wake-ups (replicas would otherwise update the same rows in
# different orders); the others skip this step.
WAKE_LOCK = 0x1D6E57_0004

# Consume up to $1 wake-ups and make the rows waiting for their keys due now.
WAKE = """
WITH woken AS (
    DELETE FROM ingest_pending_wakes
    WHERE id IN (SELECT id FROM ingest_pending_wakes ORDER BY id LIMIT $1)
    RETURNING key
), due AS (
    UPDATE ingest_pending AS p
    SET next_attempt_at = now()
    WHERE p.waits_for && ARRAY(SELECT DISTINCT key FROM woken)
      AND p.next_attempt_at > now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM woken) AS wakes, (SELECT count(*) FROM due) AS rows
"""

# Move up to $2 rows parked more than $1 days ago to ingest_skipped as `expired: <reason>`,
# keeping what a replay needs.
EXPIRE = """
WITH gone AS (
    DELETE FROM ingest_pending AS p
    USING (
        SELECT source, event_id FROM ingest_pending
        WHERE parked_at < now() - $1::float8 * interval '1 day' AND source = ANY($3::text[])
        ORDER BY parked_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) AS old
    WHERE p.source = old.source AND p.event_id = old.event_id
    RETURNING p.source, p.event_id, p.event_type, p.event_time, p.partition_key, p.payload,
              p.reason
)
INSERT INTO ingest_skipped AS s
    (source, event_id, event_type, event_time, reason, partition_key, payload)
SELECT source, event_id, event_type, event_time, $4 || reason, partition_key, payload
FROM gone
ON CONFLICT (source, event_id) DO UPDATE
SET reason = EXCLUDED.reason, partition_key = EXCLUDED.partition_key,
    payload = EXCLUDED.payload, skipped_at = now()
RETURNING s.reason
"""

# `ingester pending retry --expired`: expired events go back to the pending table, due now,
# with a fresh PENDING_MAX_AGE_DAYS.
REVIVE_EXPIRED = """
WITH back AS (
    DELETE FROM ingest_skipped
    WHERE payload IS NOT NULL AND starts_with(reason, $2) AND source = ANY($1::text[])
    RETURNING source, event_id, event_type, event_time, partition_key, payload, reason
)
INSERT INTO ingest_pending
    (source, event_id, event_type, event_time, partition_key, payload, reason, next_attempt_at)
SELECT source, event_id, event_type, event_time, coalesce(partition_key, ''), payload,
       substr(reason, length($2) + 1), now()
FROM back
ON CONFLICT (source, event_id) DO NOTHING
"""

MAKE_ALL_DUE = """
UPDATE ingest_pending SET next_attempt_at = now()
WHERE next_attempt_at > now() AND source = ANY($1::text[])
"""

EXPIRED_SUMMARY = """
SELECT reason, count(*) AS events
FROM ingest_skipped
WHERE payload IS NOT NULL
GROUP BY reason
ORDER BY reason
"""


@dataclass(frozen=True, slots=True)
class Woken:
    wakes: int  # wake-ups consumed
    rows: int  # parked rows they made due


async def wake(conn: asyncpg.Connection, limit: int) -> Woken:
    """Inside a transaction: consume wake-ups, unless another pass is doing so."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", WAKE_LOCK):
        return Woken(0, 0)
    row = await conn.fetchrow(WAKE, limit)
    return Woken(row["wakes"], row["rows"]) if row else Woken(0, 0)


async def expire(
    conn: asyncpg.Connection, sources: Sequence[str], max_age_days: float, limit: int
) -> list[str]:
    """Expire old parked rows of ``sources``; return the reason of each (``expired: ...``)."""
    rows = await conn.fetch(EXPIRE, max_age_days, limit, list(sources), EXPIRED_PREFIX)
    return [r["reason"] for r in rows]


async def revive_expired(conn: asyncpg.Connection, sources: Sequence[str]) -> int:
    status = await conn.execute(REVIVE_EXPIRED, list(sources), EXPIRED_PREFIX)
    return int(status.rsplit(" ", 1)[-1])


async def make_all_due(conn: asyncpg.Connection, sources: Sequence[str]) -> None:
    await conn.execute(MAKE_ALL_DUE, list(sources))


async def expired_summary(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    return [(r["reason"], r["events"]) for r in await conn.fetch(EXPIRED_SUMMARY)]
