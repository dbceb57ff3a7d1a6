"""What the operator console's overview reads from the bookkeeping tables: events applied per
minute, dead letters by error class, skipped events by reason. Each statement reads through
an index on a time column (``sql/0009``), over a bounded recent span, except the dead-letter
log, which retention keeps small and which holds only what failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

APPLIED_PER_MINUTE = """
SELECT date_trunc('minute', processed_at) AS minute, source, count(*) AS events
FROM ingest_inbox
WHERE processed_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1)
GROUP BY 1, 2
ORDER BY 1, 2
"""


@dataclass(frozen=True, slots=True)
class Applied:
    minute: datetime
    source: str
    events: int


async def applied_per_minute(conn: asyncpg.Connection, minutes: int) -> list[Applied]:
    """Events applied (first seen by the inbox) per minute and source, the last ``minutes``
    minutes, the current one included."""
    rows = await conn.fetch(APPLIED_PER_MINUTE, minutes)
    return [Applied(r["minute"], r["source"], r["events"]) for r in rows]


APPLIED_SINCE = """
SELECT now() AS now, count(*) AS events FROM ingest_inbox WHERE processed_at > $1
"""


async def applied_since(conn: asyncpg.Connection, since: datetime) -> tuple[datetime, int]:
    """The database's clock and the events applied after ``since`` (by that clock)."""
    row = await conn.fetchrow(APPLIED_SINCE, since)
    assert row is not None
    return row["now"], row["events"]


async def database_now(conn: asyncpg.Connection) -> datetime:
    now: datetime = await conn.fetchval("SELECT now()")
    return now


DEAD_LETTERS_BY_ERROR = """
SELECT error_class, count(*) AS events,
       count(*) FILTER (WHERE dead_at > now() - interval '24 hours') AS last_day,
       max(dead_at) AS latest
FROM ingest_dead_letters
GROUP BY error_class
ORDER BY events DESC, error_class
"""


@dataclass(frozen=True, slots=True)
class Counted:
    """Events of one reason (an error class, a skip reason): all kept, the last 24 hours'
    and the latest one's time."""

    reason: str
    events: int
    last_day: int
    latest: datetime


async def dead_letters_by_error(conn: asyncpg.Connection) -> list[Counted]:
    rows = await conn.fetch(DEAD_LETTERS_BY_ERROR)
    return [Counted(r["error_class"], r["events"], r["last_day"], r["latest"]) for r in rows]


SKIPPED_BY_REASON = """
SELECT reason, count(*) AS events, count(*) AS last_day, max(skipped_at) AS latest
FROM ingest_skipped
WHERE skipped_at > now() - interval '24 hours'
GROUP BY reason
ORDER BY events DESC, reason
"""


async def skipped_by_reason(conn: asyncpg.Connection) -> list[Counted]:
    """Skipped events of the last 24 hours by reason (the table keeps 90 days of them)."""
    rows = await conn.fetch(SKIPPED_BY_REASON)
    return [Counted(r["reason"], r["events"], r["last_day"], r["latest"]) for r in rows]
