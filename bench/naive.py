"""The baseline the consumers are compared with: one statement per row, per event.

What a straightforward handler would do: for every event, ``await conn.execute(...)`` for
each row it writes (the inbox row, the target row, the bookkeeping row), all events inside
one transaction so that commits do not dominate. It is given every advantage the batched
path does not have: events are decoded before the clock starts, there is no Kafka fetch or
offset commit, and look-ups (experiment, variants) are cached instead of read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.dataset import Seeded
from consumers.decode import RawRecord, decode
from consumers.handlers.kit_events import KitChange, parse_kit
from consumers.types import Event
from contract.records import Record

INSERT_INBOX = """
INSERT INTO ingest_inbox (source, event_id, topic, partition, "offset")
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, event_id) DO NOTHING
"""

INSERT_IMPRESSION = """
INSERT INTO impressions (id, user_id, experiment_id, variant_id, impression_at,
    is_first_exposure, session_identifier, page_url, user_agent, country_code, device_type,
    connection_type, utm_source, scroll_depth_percent, time_on_page)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::device_type_enum,
    $12::connection_type_enum, $13, $14, $15)
ON CONFLICT (id) DO NOTHING
"""

UPSERT_PARTICIPATION = """
INSERT INTO user_experiment_participation AS p
    (user_id, experiment_id, variant_id, first_exposure_date, total_impressions)
VALUES ($1, $2, $3, $4, 1)
ON CONFLICT (user_id, experiment_id) DO UPDATE SET
    total_impressions = coalesce(p.total_impressions, 0) + 1,
    first_exposure_date = least(p.first_exposure_date, excluded.first_exposure_date),
    updated_at = now()
"""

UPDATE_PROFILE = """
UPDATE user_profiles SET kit_subscriber_id = $2, kit_state = coalesce($3, kit_state),
    updated_at = now()
WHERE lower(email) = $1
RETURNING id
"""

UPSERT_KIT_VERSION = """
INSERT INTO ingest_kit_versions AS k (user_profile_id, event_time, event_id)
VALUES ($1, $2, $3)
ON CONFLICT (user_profile_id) DO UPDATE
SET event_time = excluded.event_time, event_id = excluded.event_id
WHERE (k.event_time, k.event_id) < (excluded.event_time, excluded.event_id)
"""


@dataclass(frozen=True, slots=True)
class NaiveRun:
    events: int
    statements: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def decode_records(records: Sequence[Record], topic: str) -> list[Event]:
    return [
        decode(RawRecord(topic, 0, offset, r.key, r.value, r.headers))
        for offset, r in enumerate(records)
    ]


async def _inbox(conn: asyncpg.Connection, event: Event) -> None:
    position = event.position
    assert position is not None
    await conn.execute(
        INSERT_INBOX, event.source, event.id, position.topic, position.partition, position.offset
    )


async def apply_impressions(
    conn: asyncpg.Connection, events: Sequence[Event], seeded: Seeded
) -> NaiveRun:
    started = time.perf_counter()
    async with conn.transaction():
        for event in events:
            item = event.data
            user_id = uuid.UUID(item["user_id"])
            variant_id = seeded.variant_ids[item["variant"]]
            await _inbox(conn, event)
            await conn.execute(
                INSERT_IMPRESSION,
                uuid.UUID(item["id"]), user_id, seeded.experiment_id, variant_id, event.time,
                False, item.get("session_identifier"), item.get("page_url"),
                item.get("user_agent"), item.get("country_code"), item.get("device_type"),
                item.get("connection_type"), item.get("utm_source"),
                item.get("scroll_depth_percent"), item.get("time_on_page"),
            )  # fmt: skip
            await conn.execute(
                UPSERT_PARTICIPATION, user_id, seeded.experiment_id, variant_id, event.time
            )
    return NaiveRun(len(events), 3 * len(events), time.perf_counter() - started)


async def apply_kit(conn: asyncpg.Connection, events: Sequence[Event]) -> NaiveRun:
    started = time.perf_counter()
    async with conn.transaction():
        for event in events:
            change = parse_kit(event)
            await _inbox(conn, event)
            if not isinstance(change, KitChange):
                continue  # an event that changes nothing we keep
            profile_id = await conn.fetchval(
                UPDATE_PROFILE, change.email, change.subscriber_id, change.state
            )
            if profile_id is not None:
                await conn.execute(UPSERT_KIT_VERSION, profile_id, event.time, event.id)
    return NaiveRun(len(events), 3 * len(events), time.perf_counter() - started)


IMPRESSION_COLUMNS = (
    "id", "user_id", "experiment_id", "variant_id", "impression_at", "is_first_exposure",
    "session_identifier", "page_url", "user_agent", "country_code", "device_type",
    "connection_type", "utm_source", "scroll_depth_percent", "time_on_page",
)  # fmt: skip


def impression_rows(events: Sequence[Event], seeded: Seeded) -> list[tuple[Any, ...]]:
    """The impressions rows of ``events``, as the naive loop inserts them."""
    rows = []
    for event in events:
        item = event.data
        row = (
            uuid.UUID(item["id"]), uuid.UUID(item["user_id"]), seeded.experiment_id,
            seeded.variant_ids[item["variant"]], event.time, False,
            item.get("session_identifier"), item.get("page_url"), item.get("user_agent"),
            item.get("country_code"), item.get("device_type"), item.get("connection_type"),
            item.get("utm_source"), item.get("scroll_depth_percent"), item.get("time_on_page"),
        )  # fmt: skip
        rows.append(row)
    return rows


async def copy_impressions(
    conn: asyncpg.Connection, events: Sequence[Event], seeded: Seeded
) -> NaiveRun:
    """The ceiling: the same impression rows by one binary COPY into ``impressions`` in one
    transaction (rows built before the clock starts; no inbox, no participation)."""
    rows = impression_rows(events, seeded)
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table("impressions", records=rows, columns=IMPRESSION_COLUMNS)
    return NaiveRun(len(rows), 1, time.perf_counter() - started)
