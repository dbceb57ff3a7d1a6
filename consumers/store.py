"""The runtime's bookkeeping tables: inbox, skipped, dead letters (the pending table is
:mod:`consumers.pending.store`).

Every write is one statement for the whole batch (``unnest`` of parallel arrays). Payloads
travel as JSON text cast to ``jsonb`` in SQL, so no connection needs a custom codec.

``scope`` namespaces the ``source`` column for runtimes other than the ingester's own
consumers (an internal team applying the same topics to its own tables): the inbox key
becomes ``"{scope}/{source}"`` so the two never see each other's events as duplicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
INSERT INTO ingest_inbox (source, event_id, topic, partition, "offset", partition_key)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[])
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
        *positions(events),
        [e.partition_key for e in events],
    )
    return keys_of(rows, scope)


def positions(
    events: Sequence[Event],
) -> tuple[list[str | None], list[int | None], list[int | None]]:
    """The topic, partition and offset columns of ``events`` (NULL where unknown)."""
    return (
        [e.position.topic if e.position else None for e in events],
        [e.position.partition if e.position else None for e in events],
        [e.position.offset if e.position else None for e in events],
    )


def keys_of(rows: Iterable[asyncpg.Record], scope: str) -> set[tuple[str, str]]:
    return {(original_source(r["source"], scope), r["event_id"]) for r in rows}


async def delete_keys(
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
    await delete_keys(conn, RELEASE_INBOX, keys, scope)


RECORD_SKIPPED = """
INSERT INTO ingest_skipped
    (source, event_id, event_type, event_time, reason, partition_key, topic, partition, "offset")
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[], $8::int[], $9::bigint[])
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
        [e.partition_key for e, _ in skipped],
        *positions([e for e, _ in skipped]),
    )


LOG_DEAD_LETTERS = """
INSERT INTO ingest_dead_letters
    (source, event_id, topic, partition, "offset", error_class, error, partition_key)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[], $6::text[],
                     $7::text[], $8::text[])
"""


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    source: str | None
    event_id: str | None
    position: Position
    error_class: str
    error: str
    partition_key: str | None = None


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
        [r.partition_key for r in rows],
    )
