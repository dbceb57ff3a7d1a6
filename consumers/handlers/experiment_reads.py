"""Batch reads of the experiment tables (seed 002), made before a batch is planned.

Each read covers the whole consumer batch (``= ANY`` / ``unnest`` of parallel arrays).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from consumers.handlers.experiment_plan import Experiment, Key, Participation

SELECT_EXPERIMENTS = """
SELECT e.id, e.name, coalesce(e.is_active, true) AS is_active,
       coalesce(e.status::text, 'draft') AS status, e.started_at, e.ended_at,
       v.id AS variant_id, v.name AS variant_name
FROM experiments AS e LEFT JOIN variants AS v ON v.experiment_id = e.id
WHERE e.name = ANY($1::text[])
"""

SELECT_KNOWN = """
SELECT 'user' AS kind, id FROM user_profiles WHERE id = ANY($1::uuid[])
UNION ALL SELECT 'impression', id FROM impressions WHERE id = ANY($2::uuid[])
UNION ALL SELECT 'conversion', id FROM conversions WHERE id = ANY($3::uuid[])
"""

# Locked in key order so two consumers touching the same rows cannot deadlock.
LOCK_PARTICIPATIONS = """
SELECT p.user_id, p.experiment_id, p.variant_id, p.first_exposure_date,
       coalesce(p.has_converted, false) AS has_converted, p.first_conversion_date,
       coalesce(p.conversion_within_window, false) AS conversion_within_window
FROM user_experiment_participation AS p
JOIN unnest($1::uuid[], $2::uuid[]) AS k(user_id, experiment_id)
  ON p.user_id = k.user_id AND p.experiment_id = k.experiment_id
ORDER BY p.user_id, p.experiment_id
FOR UPDATE OF p
"""


# Transaction-scoped advisory locks, one per (user, experiment), taken in the order given.
LOCK_PARTICIPATION_KEYS = """
SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) WITH ORDINALITY AS t(k, n)
"""


def participation_lock_id(key: Key) -> int:
    """A stable signed 64-bit advisory lock id for one participation key."""
    digest = hashlib.blake2b(key[0].bytes + key[1].bytes, digest_size=8, person=b"ingest-part")
    return int.from_bytes(digest.digest(), "big", signed=True)


def participation_of(row: asyncpg.Record) -> Participation:
    return Participation(
        user_id=row["user_id"],
        experiment_id=row["experiment_id"],
        variant_id=row["variant_id"],
        first_exposure_date=row["first_exposure_date"],
        has_converted=row["has_converted"],
        first_conversion_date=row["first_conversion_date"],
        conversion_within_window=row["conversion_within_window"],
    )


def experiment_of(rows: Sequence[asyncpg.Record]) -> Experiment:
    """One experiment from its rows of ``SELECT_EXPERIMENTS`` (one per variant)."""
    head = rows[0]
    variants = {r["variant_name"]: r["variant_id"] for r in rows if r["variant_id"] is not None}
    return Experiment(
        head["id"],
        head["name"],
        head["is_active"],
        head["status"],
        head["started_at"],
        head["ended_at"],
        variants,
    )


async def load_experiments(conn: asyncpg.Connection, names: Iterable[str]) -> dict[str, Experiment]:
    rows = await conn.fetch(SELECT_EXPERIMENTS, sorted(set(names)))
    grouped: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        grouped.setdefault(row["name"], []).append(row)
    return {name: experiment_of(group) for name, group in grouped.items()}


async def load_known(
    conn: asyncpg.Connection,
    user_ids: Iterable[uuid.UUID],
    impression_ids: Iterable[uuid.UUID],
    conversion_ids: Iterable[uuid.UUID],
) -> dict[str, set[uuid.UUID]]:
    """Which users exist and which impression / conversion ids are already stored."""
    rows = await conn.fetch(
        SELECT_KNOWN, list(set(user_ids)), list(set(impression_ids)), list(set(conversion_ids))
    )
    known: dict[str, set[uuid.UUID]] = {"user": set(), "impression": set(), "conversion": set()}
    for row in rows:
        known[row["kind"]].add(row["id"])
    return known


async def lock_participation_keys(conn: asyncpg.Connection, keys: Iterable[Key]) -> None:
    """Hold each key's advisory lock until the transaction ends, taken in ascending lock id
    order (the same order in every transaction, so two of them cannot deadlock)."""
    ids = sorted({participation_lock_id(k) for k in keys})
    if ids:
        await conn.fetchval(LOCK_PARTICIPATION_KEYS, ids)


async def lock_participations(conn: asyncpg.Connection, keys: Iterable[Key]) -> list[Participation]:
    ordered = sorted(set(keys))
    if not ordered:
        return []
    rows = await conn.fetch(LOCK_PARTICIPATIONS, [k[0] for k in ordered], [k[1] for k in ordered])
    return [participation_of(row) for row in rows]
