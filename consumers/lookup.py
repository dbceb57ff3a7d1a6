"""Where an event is now (the operator console's Event lookup), found by its id or by a user
key, and its record as published, fetched from its exact topic, partition and offset.

Every bookkeeping table keeps the record's position and partition key (``sql/0009``): an id
is looked up through the primary keys (``source = ANY(sources)``), a user key through the
``partition_key`` indexes, and a record is one fetch at one offset. Nothing scans a topic.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiokafka import TopicPartition

from consumers.decode import RawRecord
from consumers.types import Position
from contract.keys import email_key
from core.kafka import make_consumer
from core.settings import Settings

# One row per table an event is in: by id ($1 the sources, $2 the id, $3 the limit) or by
# user key ($1 the partition keys, $2 the limit).
_TABLES = """
SELECT 'applied' AS state, source, event_id, processed_at AS at, NULL AS event_type,
       '' AS detail, partition_key, topic, partition, "offset"
FROM ingest_inbox WHERE {where}
UNION ALL
SELECT 'parked', source, event_id, parked_at, event_type,
       reason || ' (' || attempts || ' retries)', partition_key, topic, partition, "offset"
FROM ingest_pending WHERE {where}
UNION ALL
SELECT 'skipped', source, event_id, skipped_at, event_type, reason, partition_key, topic,
       partition, "offset"
FROM ingest_skipped WHERE {where}
UNION ALL
SELECT 'dead-lettered', source, event_id, dead_at, NULL, error_class || ': ' || error,
       partition_key, topic, partition, "offset"
FROM ingest_dead_letters WHERE {dead}
ORDER BY at DESC
LIMIT {limit}
"""
_BY_ID = "source = ANY($1::text[]) AND event_id = $2"
BY_ID = _TABLES.format(where=_BY_ID, dead="event_id = $2", limit="$3")
_BY_KEY = "partition_key = ANY($1::text[])"
BY_KEY = _TABLES.format(where=_BY_KEY, dead=_BY_KEY, limit="$2")

# The now of an event: a parked or skipped row says more than the inbox row written with it.
RANK = {"parked": 0, "skipped": 1, "applied": 2, "dead-lettered": 3}


@dataclass(frozen=True, slots=True)
class Sighting:
    """One row about an event: ``state`` applied (the inbox), parked, skipped or
    dead-lettered, since ``at``, with the reason or error in ``detail``."""

    state: str
    source: str | None
    event_id: str | None
    at: datetime
    event_type: str | None
    detail: str
    partition_key: str | None
    position: Position | None


@dataclass(frozen=True, slots=True)
class Whereabouts:
    """One event: where it is now (``now``) and every row about it, newest first."""

    source: str | None
    event_id: str | None
    sightings: tuple[Sighting, ...]

    @property
    def now(self) -> Sighting:
        return min(self.sightings, key=lambda s: (RANK[s.state], -s.at.timestamp()))

    @property
    def position(self) -> Position | None:
        """Where its record was published: the first read the bookkeeping remembers."""
        known = [s for s in self.sightings if s.position is not None]
        return min(known, key=lambda s: s.at).position if known else None


def _sighting(row: asyncpg.Record) -> Sighting:
    position = None
    if row["topic"] is not None and row["partition"] is not None and row["offset"] is not None:
        position = Position(row["topic"], row["partition"], row["offset"])
    return Sighting(
        row["state"], row["source"], row["event_id"], row["at"], row["event_type"],
        row["detail"], row["partition_key"], position,
    )  # fmt: skip


def _events(rows: Sequence[asyncpg.Record]) -> list[Whereabouts]:
    grouped: dict[tuple[str | None, str | None], list[Sighting]] = {}
    for row in rows:
        sighting = _sighting(row)
        grouped.setdefault((sighting.source, sighting.event_id), []).append(sighting)
    return [Whereabouts(s, i, tuple(found)) for (s, i), found in grouped.items()]


async def by_id(
    conn: asyncpg.Connection, event_id: str, sources: Sequence[str], limit: int = 50
) -> list[Whereabouts]:
    """The events with id ``event_id`` (one per source that has it)."""
    return _events(await conn.fetch(BY_ID, list(sources), event_id, limit))


# Emails match by the database's key (ingest_email_key, through its indexes), as the handlers
# match them; the keys records carry are made from the emails found (contract.keys).
USERS = """
SELECT id, uid, email FROM users
WHERE uid = $1 OR id = $3
   OR ingest_email_key(email) IN (SELECT ingest_email_key(e) FROM unnest($2::text[]) AS e)
   OR id IN (SELECT user_id FROM user_revenue_cat_ids WHERE revenue_cat_id = $1)
   OR id IN (SELECT user_id FROM user_klaviyo_profiles WHERE klaviyo_id = $1)
"""
PROFILES = """
SELECT id::text AS id, email FROM user_profiles
WHERE id = $2
   OR ingest_email_key(email) IN (SELECT ingest_email_key(e) FROM unnest($1::text[]) AS e)
"""
USER_KEYS = """
SELECT revenue_cat_id AS key FROM user_revenue_cat_ids WHERE user_id = ANY($1::int[])
UNION SELECT klaviyo_id FROM user_klaviyo_profiles WHERE user_id = ANY($1::int[])
"""


async def user_keys(conn: asyncpg.Connection, term: str) -> list[str]:
    """Every partition key of the person ``term`` names (a RevenueCat id, an email, a
    ``users`` uid or id, a Klaviyo profile id, a ``user_profiles`` id), the term included:
    the RevenueCat ids and Klaviyo profile ids of the user, the emails and profile ids of
    the same person (same email key)."""
    term = term.strip()
    as_uuid = _uuid(term)
    as_int = int(term) if term.isdigit() and len(term) < 10 else None
    profiles = await conn.fetch(PROFILES, [term], as_uuid)
    emails = {term, *(p["email"] for p in profiles)}
    users = await conn.fetch(USERS, term, list(emails), as_int)
    emails |= {u["email"] for u in users}
    profiles = await conn.fetch(PROFILES, list(emails), as_uuid)
    linked = await conn.fetch(USER_KEYS, [u["id"] for u in users])
    keys = {term, *(email_key(e) for e in emails), *(u["uid"] for u in users)}
    keys |= {p["id"] for p in profiles} | {r["key"] for r in linked}
    return sorted(keys)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def by_user(
    conn: asyncpg.Connection, term: str, limit: int = 200
) -> tuple[list[str], list[Whereabouts]]:
    """The user's partition keys and the events keyed by them, newest rows first."""
    keys = await user_keys(conn, term)
    return keys, _events(await conn.fetch(BY_KEY, keys, limit))


async def fetch_record(
    settings: Settings, position: Position, timeout_s: float = 5.0
) -> RawRecord | None:
    """The record at ``position``, read by one fetch at that offset; None when the topic no
    longer has it (retention) or does not answer within ``timeout_s``."""
    consumer = make_consumer(settings, group_id=None, client_id="ingester-console")
    tp = TopicPartition(position.topic, position.partition)
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.start()
            consumer.assign([tp])
            consumer.seek(tp, position.offset)
            while True:
                batch = await consumer.getmany(tp, timeout_ms=200, max_records=1)
                for record in batch.get(tp, []):
                    return RawRecord.of(record) if record.offset == position.offset else None
    except TimeoutError:
        return None
    finally:
        await consumer.stop()
