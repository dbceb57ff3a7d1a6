"""Builders shared by the experiments integration tests.

Events are made the way production makes them: items go through the ingest service's
``build_records`` and come back through the consumer's ``decode``, so the tests exercise the
one shared definition of an experiments record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from consumers import db
from consumers.decode import RawRecord, decode
from consumers.handlers.experiments import ExperimentsHandler
from consumers.types import Context, Event, Result
from contract.records import Record, rfc3339
from ingest.providers.events import build_records

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
RECEIVED_AT = "2024-06-01T12:00:00.000Z"


def at(hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, days=days)


def item(
    kind: str,
    user: uuid.UUID,
    moment: datetime,
    experiment: str = "checkout",
    variant: str = "control",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": str(extra.pop("id", uuid.uuid4())),
        "type": kind,
        "user_id": str(user),
        "experiment": experiment,
        "variant": variant,
        "occurred_at": rfc3339(moment),
        **extra,
    }


def records(items: Sequence[Mapping[str, Any]]) -> list[Record]:
    return build_records({"events": list(items)}, RECEIVED_AT)


def to_event(record: Record, offset: int = 0) -> Event:
    raw = RawRecord("ingest.experiments.v1", 0, offset, record.key, record.value, record.headers)
    return decode(raw)


def events(*items: Mapping[str, Any]) -> list[Event]:
    return [to_event(r, i) for i, r in enumerate(records(items))]


def context() -> Context:
    return Context(environment="dev", now=datetime.now(UTC))


async def apply(pool: asyncpg.Pool, batch: Sequence[Event]) -> list[Result]:
    """One handler call in one transaction, as the runtime makes it."""
    async with db.transaction(pool) as conn:
        return await ExperimentsHandler().apply(conn, batch, context())


@dataclass(frozen=True, slots=True)
class Seeded:
    experiment: uuid.UUID
    variants: Mapping[str, uuid.UUID]


async def create_experiment(
    conn: asyncpg.Connection | asyncpg.Pool,
    name: str = "checkout",
    variants: Iterable[str] = ("control", "treatment"),
    **columns: Any,
) -> Seeded:
    names = ["name", *columns]
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    experiment = await conn.fetchval(
        f"INSERT INTO experiments ({', '.join(names)}) VALUES ({params}) RETURNING id",
        name,
        *columns.values(),
    )
    ids = {}
    for offset, variant in enumerate(variants):
        ids[variant] = await conn.fetchval(
            "INSERT INTO variants (experiment_id, name, created_at) VALUES ($1, $2, $3)"
            " RETURNING id",
            experiment,
            variant,
            T0 - timedelta(days=30) + timedelta(seconds=offset),
        )
    return Seeded(experiment, ids)


async def create_profile(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> uuid.UUID:
    profile: uuid.UUID = await conn.fetchval(
        "INSERT INTO user_profiles (email) VALUES ($1) RETURNING id", email
    )
    return profile


async def participation(pool: asyncpg.Pool, user: uuid.UUID) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM user_experiment_participation WHERE user_id = $1", user
    )


# Every experiment row a consumer writes, by natural keys and names (no generated ids, no
# write times), so two databases fed the same events in different orders compare equal.
SNAPSHOT = {
    "participations": """
        SELECT p.user_id, e.name AS experiment, v.name AS variant, p.first_exposure_date,
               p.total_impressions, p.has_converted, p.first_conversion_date,
               p.conversion_within_window
        FROM user_experiment_participation p JOIN experiments e ON e.id = p.experiment_id
        JOIN variants v ON v.id = p.variant_id ORDER BY 1, 2""",
    "impressions": """
        SELECT i.id, v.name AS variant, i.impression_at, i.is_first_exposure,
               i.user_was_eligible, i.user_eligibility_status::text AS status
        FROM impressions i JOIN variants v ON v.id = i.variant_id ORDER BY 1""",
    "conversions": """
        SELECT c.id, c.user_id, e.name AS experiment, v.name AS variant, c.conversion_type,
               c.conversion_value, c.created_at, c.time_to_convert,
               c.is_first_conversion_for_experiment AS first, c.original_exposure_date,
               c.conversion_context::text AS context, c.details::text AS details
        FROM conversions c JOIN experiments e ON e.id = c.experiment_id
        JOIN variants v ON v.id = c.variant_id ORDER BY 1""",
    "attributions": """
        SELECT a.conversion_id, v.name AS variant, a.time_to_conversion_hours,
               a.conversion_value_attributed
        FROM conversion_attribution a JOIN variants v ON v.id = a.variant_id ORDER BY 1""",
}


async def snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    return {name: [tuple(r) for r in await pool.fetch(sql)] for name, sql in SNAPSHOT.items()}
