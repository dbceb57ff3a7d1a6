"""The pending table (``ingest_pending``) and its wake-ups (``ingest_pending_wakes``).

Parking, reading the due rows, locking and deleting them; consuming wake-ups, expiring old
rows, putting expired ones back (what operators read is :mod:`consumers.pending.browse`). Each
statement touches only the rows it names through an index (``waits_for`` GIN, ``parked_at``,
``next_attempt_at``, the replayable part of ``ingest_skipped``) and at most ``limit`` of them,
so a pass costs what became ready, not what is parked. Every write is one statement for the
whole batch (``unnest`` of parallel arrays); payloads travel as JSON text cast to ``jsonb``.

``scope`` namespaces the ``source`` column as in :mod:`consumers.store`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from consumers.store import (
    delete_keys,
    dumps,
    keys_of,
    original_source,
    positions,
    stored_source,
)
from consumers.types import Event, PendingEvent, Position

# waits_for travels as one JSON array per row (unnest cannot take ragged arrays of arrays).
PARK = """
INSERT INTO ingest_pending AS p
    (source, event_id, event_type, event_time, partition_key, payload, reason, waits_for,
     next_attempt_at, topic, partition, "offset")
SELECT s, i, t, tm, k, pl::jsonb, r,
       ARRAY(SELECT jsonb_array_elements_text(w::jsonb)),
       now() + make_interval(secs => $9), tp, pn, o
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
            $7::text[], $8::text[], $11::text[], $12::int[], $13::bigint[])
     AS x(s, i, t, tm, k, pl, r, w, tp, pn, o)
ON CONFLICT (source, event_id) DO UPDATE
SET reason = EXCLUDED.reason,
    waits_for = EXCLUDED.waits_for,
    attempts = p.attempts + 1,
    last_attempt_at = now(),
    next_attempt_at = now() + make_interval(
        secs => least($9 * power(2, least(p.attempts + 1, 30)), $10))
"""

# The first delay of a parked event; it doubles with each attempt, up to the cap
# (PENDING_BACKOFF_MAX_S).
BACKOFF_BASE_S = 60.0


async def park(
    conn: asyncpg.Connection,
    waiting: Sequence[PendingEvent],
    scope: str,
    *,
    max_s: float,
    base_s: float = BACKOFF_BASE_S,
) -> None:
    """Park events whose target row does not exist yet, due for a retry after ``base_s``;
    a second park counts an attempt and doubles the delay, up to ``max_s``."""
    if not waiting:
        return
    events = [w.event for w in waiting]
    await conn.execute(
        PARK,
        [stored_source(e.source, scope) for e in events],
        [e.id for e in events],
        [e.type for e in events],
        [e.time for e in events],
        [e.partition_key for e in events],
        [dumps(e.data) for e in events],
        [w.reason for w in waiting],
        [dumps(list(w.waits_for)) for w in waiting],
        base_s,
        max_s,
        *positions(events),
    )


@dataclass(frozen=True, slots=True)
class PendingRow:
    event: Event
    reason: str
    attempts: int
    origin: Position | None  # where the event was first read (its row, else the inbox)
    next_attempt_at: datetime | None = None
    parked_at: datetime | None = None


# A parked event as a PendingRow reads it: the position is the row's own, or the inbox's for
# a row parked before the pending table kept it.
PENDING_ROWS = """
SELECT p.source, p.event_id, p.event_type, p.event_time, p.partition_key,
       p.payload::text AS payload, p.reason, p.attempts, p.next_attempt_at, p.parked_at,
       coalesce(p.topic, i.topic) AS topic, coalesce(p.partition, i.partition) AS partition,
       coalesce(p."offset", i."offset") AS "offset"
FROM ingest_pending p
LEFT JOIN ingest_inbox i ON i.source = p.source AND i.event_id = p.event_id
"""


# Parked events due for a retry (``next_attempt_at`` at or before ``$2``), after the keyset
# cursor (next_attempt_at, stored source, event_id): an index range scan, never a sort of the
# whole table.
SELECT_DUE = (
    PENDING_ROWS
    + """WHERE p.next_attempt_at <= $2::timestamptz
  AND (p.next_attempt_at, p.source, p.event_id) > ($3::timestamptz, $4::text, $5::text)
  AND p.source = ANY($1::text[])
ORDER BY p.next_attempt_at, p.source, p.event_id
LIMIT $6
"""
)


async def select_due(
    conn: asyncpg.Connection,
    sources: Iterable[str],
    due: datetime,
    after: tuple[datetime, str, str],
    limit: int,
    scope: str,
) -> list[PendingRow]:
    """Pending events due at ``due``, in ``next_attempt_at`` order, after the keyset cursor
    ``after`` (next_attempt_at, stored source, event_id)."""
    rows = await conn.fetch(
        SELECT_DUE, [stored_source(s, scope) for s in sources], due, *after, limit
    )
    return [pending_row(r, scope) for r in rows]


def pending_row(row: asyncpg.Record, scope: str) -> PendingRow:
    origin = None
    if row["topic"] is not None and row["partition"] is not None and row["offset"] is not None:
        origin = Position(row["topic"], row["partition"], row["offset"])
    event = Event(
        source=original_source(row["source"], scope),
        id=row["event_id"],
        type=row["event_type"],
        time=row["event_time"],
        partition_key=row["partition_key"],
        data=orjson.loads(row["payload"]),
        position=origin,
    )
    return PendingRow(
        event, row["reason"], row["attempts"], origin, row["next_attempt_at"], row["parked_at"]
    )


LOCK = """
SELECT p.source, p.event_id
FROM ingest_pending p
JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
  ON p.source = k.source AND p.event_id = k.event_id
FOR UPDATE OF p SKIP LOCKED
"""


async def lock(
    conn: asyncpg.Connection, events: Sequence[Event], scope: str
) -> set[tuple[str, str]]:
    """Lock the still-pending rows of ``events``; rows another worker holds are skipped."""
    rows = await conn.fetch(
        LOCK, [stored_source(e.source, scope) for e in events], [e.id for e in events]
    )
    return keys_of(rows, scope)


DELETE = """
DELETE FROM ingest_pending p
USING unnest($1::text[], $2::text[]) AS k(source, event_id)
WHERE p.source = k.source AND p.event_id = k.event_id
"""


async def delete(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], scope: str) -> None:
    await delete_keys(conn, DELETE, keys, scope)


# Delete the rows of ``keys`` that are still parked and that no other transaction holds;
# return the ones deleted.
TAKE = """
DELETE FROM ingest_pending p
USING (
    SELECT q.source, q.event_id
    FROM ingest_pending q
    JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
      ON q.source = k.source AND q.event_id = k.event_id
    FOR UPDATE OF q SKIP LOCKED
) AS held
WHERE p.source = held.source AND p.event_id = held.event_id
RETURNING p.source, p.event_id
"""


async def take(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], scope: str
) -> set[tuple[str, str]]:
    """Delete the still-parked rows of ``keys`` that no other worker holds; return their keys.
    A row another replica applied (deleted) or is retrying (locked) is not returned."""
    if not keys:
        return set()
    rows = await conn.fetch(TAKE, [stored_source(s, scope) for s, _ in keys], [i for _, i in keys])
    return keys_of(rows, scope)


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
              p.reason, p.topic, p.partition, p."offset"
)
INSERT INTO ingest_skipped AS s
    (source, event_id, event_type, event_time, reason, partition_key, payload, topic,
     partition, "offset")
SELECT source, event_id, event_type, event_time, $4 || reason, partition_key, payload, topic,
       partition, "offset"
FROM gone
ON CONFLICT (source, event_id) DO UPDATE
SET reason = EXCLUDED.reason, partition_key = EXCLUDED.partition_key,
    payload = EXCLUDED.payload, skipped_at = now(), topic = EXCLUDED.topic,
    partition = EXCLUDED.partition, "offset" = EXCLUDED."offset"
RETURNING s.reason
"""

# `ingester pending retry --expired`: expired events go back to the pending table, due now,
# with a fresh PENDING_MAX_AGE_DAYS.
REVIVE_EXPIRED = """
WITH back AS (
    DELETE FROM ingest_skipped
    WHERE payload IS NOT NULL AND starts_with(reason, $2) AND source = ANY($1::text[])
    RETURNING source, event_id, event_type, event_time, partition_key, payload, reason, topic,
              partition, "offset"
)
INSERT INTO ingest_pending
    (source, event_id, event_type, event_time, partition_key, payload, reason, next_attempt_at,
     topic, partition, "offset")
SELECT source, event_id, event_type, event_time, coalesce(partition_key, ''), payload,
       substr(reason, length($2) + 1), now(), topic, partition, "offset"
FROM back
ON CONFLICT (source, event_id) DO NOTHING
"""

MAKE_ALL_DUE = """
UPDATE ingest_pending SET next_attempt_at = now()
WHERE next_attempt_at > now() AND source = ANY($1::text[])
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
