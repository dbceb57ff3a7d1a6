"""What operators read of the parked events (``ingester pending list``, the console's Parked
page), and the rows they choose to retry now.

Counts by reason with the oldest, by reason and source with the oldest and the newest, the
expired events ``pending retry --expired`` can put back; a page of one reason and source's
rows, newest or oldest first; the rows of a targeted retry (one event, or one reason a chunk
at a time). The counts read the ``(reason, source, parked_at)`` index only, and a page or a
chunk is a range of that index of at most ``limit`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from consumers.pending.store import PENDING_ROWS, PendingRow, pending_row

SUMMARY = """
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


async def summary(conn: asyncpg.Connection) -> list[PendingCount]:
    rows = await conn.fetch(SUMMARY)
    return [PendingCount(r["reason"], r["events"], r["oldest"], r["oldest_age_s"]) for r in rows]


EXPIRED_SUMMARY = """
SELECT reason, count(*) AS events
FROM ingest_skipped
WHERE payload IS NOT NULL
GROUP BY reason
ORDER BY reason
"""


async def expired_summary(conn: asyncpg.Connection) -> list[tuple[str, int]]:
    return [(r["reason"], r["events"]) for r in await conn.fetch(EXPIRED_SUMMARY)]


BY_REASON_AND_SOURCE = """
SELECT reason, source, count(*) AS events, min(parked_at) AS oldest, max(parked_at) AS newest
FROM ingest_pending
GROUP BY reason, source
ORDER BY reason, source
"""


@dataclass(frozen=True, slots=True)
class ParkedGroup:
    """The parked events of one reason and source."""

    reason: str
    source: str
    events: int
    oldest: datetime
    newest: datetime


async def by_reason_and_source(conn: asyncpg.Connection) -> list[ParkedGroup]:
    rows = await conn.fetch(BY_REASON_AND_SOURCE)
    return [
        ParkedGroup(r["reason"], r["source"], r["events"], r["oldest"], r["newest"]) for r in rows
    ]


# One page of a reason and source, newest or oldest first (an index range, either way).
PAGE = {
    order: PENDING_ROWS
    + f"""WHERE p.reason = $1 AND p.source = $2
ORDER BY p.parked_at {order}, p.event_id {order}
LIMIT $3
"""
    for order in ("DESC", "ASC")
}


async def page(
    conn: asyncpg.Connection, reason: str, source: str, *, newest: bool, limit: int
) -> list[PendingRow]:
    """Up to ``limit`` parked events of ``reason`` and ``source``."""
    rows = await conn.fetch(PAGE["DESC" if newest else "ASC"], reason, source, limit)
    return [pending_row(r, "") for r in rows]


SELECT_KEYS = (
    PENDING_ROWS
    + """JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
  ON p.source = k.source AND p.event_id = k.event_id
"""
)


async def select_keys(
    conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]
) -> list[PendingRow]:
    """The parked rows of these (source, event id) pairs; pairs not parked are left out."""
    rows = await conn.fetch(SELECT_KEYS, [s for s, _ in keys], [i for _, i in keys])
    return [pending_row(r, "") for r in rows]


# A reason's rows in index order, after the keyset cursor (source, parked_at, event_id).
SELECT_REASON = (
    PENDING_ROWS
    + """WHERE p.reason = $1 AND p.source = ANY($2::text[])
  AND (p.source, p.parked_at, p.event_id) > ($3::text, $4::timestamptz, $5::text)
ORDER BY p.source, p.parked_at, p.event_id
LIMIT $6
"""
)

Cursor = tuple[str, datetime, str]


async def select_reason(
    conn: asyncpg.Connection,
    reason: str,
    sources: Sequence[str],
    after: Cursor,
    limit: int,
) -> list[PendingRow]:
    """Up to ``limit`` parked rows of ``reason`` (of ``sources``) after the cursor."""
    rows = await conn.fetch(SELECT_REASON, reason, list(sources), *after, limit)
    return [pending_row(r, "") for r in rows]


def cursor_of(row: PendingRow) -> Cursor:
    assert row.parked_at is not None
    return (row.event.source, row.parked_at, row.event.id)
