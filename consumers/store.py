"""The runtime's bookkeeping tables: inbox, pending, skipped, dead letters.

Every write is one statement for the whole batch (``unnest`` of parallel arrays). Payloads
travel as JSON text cast to ``jsonb`` in SQL, so no connection needs a custom codec.

``scope`` namespaces the ``source`` column for runtimes other than the ingester's own
consumers (an internal team applying the same topics to its own tables): the inbox key
becomes ``"{scope}/{source}"`` so the two never see each other's events as duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from consumers.types import Event, Position


def stored_source(source: str, scope: str = "") -> str:
    return f"{scope}/{source}" if scope else source


def original_source(stored: str, scope: str = "") -> str:
    return stored.removeprefix(f"{scope}/") if scope else stored


def dumps(data: object) -> str:
    return orjson.dumps(data).decode()


CLAIM_INBOX = """
INSERT INTO ingest_inbox (source, event_id, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[])
ON CONFLICT (source, event_id) DO NOTHING
RETURNING source, event_id
"""


async def claim_inbox(
    conn: asyncpg.Connection, events: Sequence[Event], scope: str = ""
) -> set[tuple[str, str]]:
    """Record each event as seen; return the (source, id) pairs that were new. The events
    must have distinct (source, id) pairs."""
    if not events:
        return set()
    rows = await conn.fetch(
        CLAIM_INBOX,
        [stored_source(e.source, scope) for e in events],
        [e.id for e in events],
        [e.position.topic if e.position else None for e in events],
        [e.position.partition if e.position else None for e in events],
        [e.position.offset if e.position else None for e in events],
    )
    return _keys(rows, scope)


def _keys(rows: Iterable[asyncpg.Record], scope: str) -> set[tuple[str, str]]:
    return {(original_source(r["source"], scope), r["event_id"]) for r in rows}


async def _delete_keys(
    conn: asyncpg.Connection, statement: str, keys: Sequence[tuple[str, str]], scope: str
) -> None:
    if keys:
        await conn.execute(
            statement, [stored_source(s, scope) for s, _ in keys], [i for _, i in keys]
        )


RELEASE_INBOX = """
DELETE FROM ingest_inbox i
USING unnest($1::text[], $2::text[]) AS k(source, event_id)
WHERE i.source = k.source AND i.event_id = k.event_id
"""


async def release_inbox(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], scope: str = ""
) -> None:
    """Forget events so a later replay of them applies (used when they are dead-lettered)."""
    await _delete_keys(conn, RELEASE_INBOX, keys, scope)


# waits_for travels as one JSON array per row (unnest cannot take ragged arrays of arrays).
PARK_PENDING = """
INSERT INTO ingest_pending AS p
    (source, event_id, event_type, event_time, partition_key, payload, reason, waits_for,
     next_attempt_at)
SELECT s, i, t, tm, k, pl::jsonb, r,
       ARRAY(SELECT jsonb_array_elements_text(w::jsonb)),
       now() + make_interval(secs => $9)
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
            $7::text[], $8::text[]) AS x(s, i, t, tm, k, pl, r, w)
ON CONFLICT (source, event_id) DO UPDATE
SET reason = EXCLUDED.reason,
    waits_for = EXCLUDED.waits_for,
    attempts = p.attempts + 1,
    last_attempt_at = now(),
    next_attempt_at = now() + make_interval(
        secs => least($9 * power(2, least(p.attempts + 1, 30)), $10))
"""

# Capped exponential backoff of a parked event: BACKOFF_BASE_S * 2**attempts, at most
# PENDING_BACKOFF_MAX_S (the settings field pending_backoff_max_s).
BACKOFF_BASE_S = 60.0
BACKOFF_MAX_S = 6 * 3600.0

Parked = tuple[Event, str, Sequence[str]]  # event, reason, the keys it waits for


async def park_pending(
    conn: asyncpg.Connection,
    parked: Sequence[Parked],
    scope: str = "",
    *,
    base_s: float = BACKOFF_BASE_S,
    max_s: float = BACKOFF_MAX_S,
) -> None:
    """Park events whose target row does not exist yet, due for a retry after ``base_s``;
    a second park counts an attempt and doubles the delay, up to ``max_s``."""
    if not parked:
        return
    await conn.execute(
        PARK_PENDING,
        [stored_source(e.source, scope) for e, _, _ in parked],
        [e.id for e, _, _ in parked],
        [e.type for e, _, _ in parked],
        [e.time for e, _, _ in parked],
        [e.partition_key for e, _, _ in parked],
        [dumps(e.data) for e, _, _ in parked],
        [reason for _, reason, _ in parked],
        [dumps(list(keys)) for _, _, keys in parked],
        base_s,
        max_s,
    )


RECORD_SKIPPED = """
INSERT INTO ingest_skipped (source, event_id, event_type, event_time, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
ON CONFLICT (source, event_id) DO NOTHING
"""


async def record_skipped(
    conn: asyncpg.Connection, skipped: Sequence[tuple[Event, str]], scope: str = ""
) -> None:
    if not skipped:
        return
    await conn.execute(
        RECORD_SKIPPED,
        [stored_source(e.source, scope) for e, _ in skipped],
        [e.id for e, _ in skipped],
        [e.type for e, _ in skipped],
        [e.time for e, _ in skipped],
        [reason for _, reason in skipped],
    )


@dataclass(frozen=True, slots=True)
class PendingRow:
    event: Event
    reason: str
    attempts: int
    origin: Position | None  # where the event was first read, from the inbox
    next_attempt_at: datetime | None = None


# Parked events due for a retry (``next_attempt_at`` at or before ``$2``), after the keyset
# cursor (next_attempt_at, stored source, event_id): an index range scan, never a sort of the
# whole table.
SELECT_PENDING = """
SELECT p.source, p.event_id, p.event_type, p.event_time, p.partition_key,
       p.payload::text AS payload, p.reason, p.attempts, p.next_attempt_at,
       i.topic, i.partition, i."offset"
FROM ingest_pending p
LEFT JOIN ingest_inbox i ON i.source = p.source AND i.event_id = p.event_id
WHERE p.next_attempt_at <= $2::timestamptz
  AND (p.next_attempt_at, p.source, p.event_id) > ($3::timestamptz, $4::text, $5::text)
  AND p.source = ANY($1::text[])
ORDER BY p.next_attempt_at, p.source, p.event_id
LIMIT $6
"""


async def select_pending(
    conn: asyncpg.Connection,
    sources: Iterable[str],
    due: datetime,
    after: tuple[datetime, str, str],
    limit: int,
    scope: str = "",
) -> list[PendingRow]:
    """Pending events due at ``due``, in ``next_attempt_at`` order, after the keyset cursor
    ``after`` (next_attempt_at, stored source, event_id)."""
    rows = await conn.fetch(
        SELECT_PENDING, [stored_source(s, scope) for s in sources], due, *after, limit
    )
    return [_pending_row(r, scope) for r in rows]


def _pending_row(row: asyncpg.Record, scope: str) -> PendingRow:
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
    )
    return PendingRow(event, row["reason"], row["attempts"], origin, row["next_attempt_at"])


LOCK_PENDING = """
SELECT p.source, p.event_id
FROM ingest_pending p
JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
  ON p.source = k.source AND p.event_id = k.event_id
FOR UPDATE OF p SKIP LOCKED
"""


async def lock_pending(
    conn: asyncpg.Connection, events: Sequence[Event], scope: str = ""
) -> set[tuple[str, str]]:
    """Lock the still-pending rows of ``events``; rows another worker holds are skipped."""
    rows = await conn.fetch(
        LOCK_PENDING, [stored_source(e.source, scope) for e in events], [e.id for e in events]
    )
    return _keys(rows, scope)


DELETE_PENDING = """
DELETE FROM ingest_pending p
USING unnest($1::text[], $2::text[]) AS k(source, event_id)
WHERE p.source = k.source AND p.event_id = k.event_id
"""


async def delete_pending(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]], scope: str = ""
) -> None:
    await _delete_keys(conn, DELETE_PENDING, keys, scope)


LOG_DEAD_LETTERS = """
INSERT INTO ingest_dead_letters (source, event_id, topic, partition, "offset", error_class, error)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[],
                     $7::text[])
"""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    source: str | None
    event_id: str | None
    position: Position
    error_class: str
    error: str


async def log_dead_letters(conn: asyncpg.Connection, rows: Sequence[DeadLetterRow]) -> None:
    if not rows:
        return
    await conn.execute(
        LOG_DEAD_LETTERS,
        [r.source for r in rows],
        [r.event_id for r in rows],
        [r.position.topic for r in rows],
        [r.position.partition for r in rows],
        [r.position.offset for r in rows],
        [r.error_class for r in rows],
        [r.error for r in rows],
    )


PENDING_SUMMARY = """
SELECT reason, count(*) AS events, min(parked_at) AS oldest,
       extract(epoch FROM now() - min(parked_at))::float8 AS oldest_age_s
FROM ingest_pending
GROUP BY reason
ORDER BY reason
"""


@dataclass(frozen=True, slots=True)
class PendingCount:
    reason: str
    events: int
    oldest: datetime
    oldest_age_s: float


async def pending_summary(conn: asyncpg.Connection) -> list[PendingCount]:
    rows = await conn.fetch(PENDING_SUMMARY)
    return [PendingCount(r["reason"], r["events"], r["oldest"], r["oldest_age_s"]) for r in rows]
