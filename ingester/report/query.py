"""Read one experiment and the per-variant counts its report is computed from."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from ingester.report.stats import VariantCounts

DEFAULT_CONFIDENCE_LEVEL = 0.95

SELECT_EXPERIMENT = """
SELECT id, name, description, coalesce(status::text, 'draft') AS status,
       coalesce(is_active, true) AS is_active, confidence_level, target_sample_size,
       started_at, ended_at
FROM experiments WHERE name = $1
"""

# Exposures and conversions count participants (one row per user and experiment);
# revenue sums every conversion of the variant (repeat purchases included).
SELECT_VARIANT_COUNTS = """
SELECT v.name, v.created_at,
       coalesce(p.exposures, 0) AS exposures,
       coalesce(p.conversions, 0) AS conversions,
       coalesce(c.revenue, 0) AS revenue
FROM variants AS v
LEFT JOIN (
    SELECT variant_id, count(*) AS exposures,
           count(*) FILTER (WHERE has_converted) AS conversions
    FROM user_experiment_participation WHERE experiment_id = $1 GROUP BY variant_id
) AS p ON p.variant_id = v.id
LEFT JOIN (
    SELECT variant_id, sum(conversion_value) AS revenue
    FROM conversions WHERE experiment_id = $1 GROUP BY variant_id
) AS c ON c.variant_id = v.id
WHERE v.experiment_id = $1
ORDER BY v.created_at, v.name
"""


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    id: uuid.UUID
    name: str
    description: str | None
    status: str
    is_active: bool
    confidence_level: float
    target_sample_size: int | None
    started_at: datetime | None
    ended_at: datetime | None


async def load(
    conn: asyncpg.Connection, name: str
) -> tuple[ExperimentInfo, list[VariantCounts]] | None:
    """The experiment called ``name`` and its variants' counts, or None if there is none."""
    row = await conn.fetchrow(SELECT_EXPERIMENT, name)
    if row is None:
        return None
    level = row["confidence_level"]
    info = ExperimentInfo(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        status=row["status"],
        is_active=row["is_active"],
        confidence_level=float(level) if level is not None else DEFAULT_CONFIDENCE_LEVEL,
        target_sample_size=row["target_sample_size"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )
    counts = [
        VariantCounts(
            name=r["name"],
            created_at=r["created_at"],
            exposures=r["exposures"],
            conversions=r["conversions"],
            revenue=Decimal(r["revenue"]),
        )
        for r in await conn.fetch(SELECT_VARIANT_COUNTS, info.id)
    ]
    return info, counts
