"""The consumer benchmark's data: seeded rows and the Kafka records that apply to them.

Records are built by the ingest service's own ``build_records`` (what ``POST /events`` and
``POST /webhooks/kit`` publish), so the consumers read exactly what production sends. Every
event applies: the users, the experiment and both variants exist, event times increase.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.payloads import (
    EXPERIMENT,
    VARIANTS,
    email_of,
    impression_item,
    kit_event,
    user_id_of,
)
from contract.records import Record, rfc3339
from ingest.providers import events, kit

CHUNK_EVENTS = 500  # POST /events accepts up to 500 items
CHUNK_KIT = 100  # a Kit delivery carries up to 100 events


@dataclass(frozen=True, slots=True)
class Seeded:
    experiment_id: uuid.UUID
    variant_ids: dict[str, uuid.UUID]


async def seed(conn: asyncpg.Connection, users: int) -> Seeded:
    """``users`` user profiles and one active experiment with two variants."""
    await conn.execute(
        "INSERT INTO user_profiles (id, email) SELECT * FROM unnest($1::uuid[], $2::text[])",
        [uuid.UUID(user_id_of(i)) for i in range(users)],
        [email_of(i) for i in range(users)],
    )
    experiment_id = await conn.fetchval(
        "INSERT INTO experiments (name, is_active, status, started_at)"
        " VALUES ($1, true, 'active', $2) RETURNING id",
        EXPERIMENT,
        datetime.now(UTC) - timedelta(days=30),
    )
    variant_ids = {}
    for name in VARIANTS:
        variant_ids[name] = await conn.fetchval(
            "INSERT INTO variants (experiment_id, name) VALUES ($1, $2) RETURNING id",
            experiment_id,
            name,
        )
    return Seeded(experiment_id, variant_ids)


def impression_records(count: int, users: int, start: datetime) -> list[Record]:
    received_at = rfc3339(datetime.now(UTC))
    items = [impression_item(i, i % users, start + timedelta(milliseconds=i)) for i in range(count)]
    records: list[Record] = []
    for at in range(0, count, CHUNK_EVENTS):
        chunk = items[at : at + CHUNK_EVENTS]
        records += events.build_records({"events": chunk}, received_at)
    return records


def kit_records(count: int, users: int, start: datetime) -> list[Record]:
    received_at = rfc3339(datetime.now(UTC))
    items = [kit_event(i, i % users, start + timedelta(milliseconds=i)) for i in range(count)]
    records: list[Record] = []
    for at in range(0, count, CHUNK_KIT):
        body = {"delivery_id": at, "events": items[at : at + CHUNK_KIT]}
        records += kit.build_records(body, received_at)
    return records
