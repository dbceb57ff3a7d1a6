"""Read one experiment and everything its report is computed from."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import asyncpg

from ingester.report.model import DailyCounts, ExperimentData, ExperimentInfo, VariantCounts
from ingester.report.revenue import RevenueSums

DEFAULT_CONFIDENCE_LEVEL = 0.95

SELECT_EXPERIMENT = """
SELECT id, name, description, coalesce(status::text, 'draft') AS status,
       coalesce(is_active, true) AS is_active, confidence_level, target_sample_size,
       minimum_detectable_effect, started_at, ended_at
FROM experiments WHERE name = $1
"""

# Net revenue per user, variant and UTC day: conversion values with refunds (stored positive)
# subtracted. Only conversions of a participant of the same variant count, so the revenue and
# the exposures it is divided by describe the same users.
NET_REVENUE_BY_DAY = """
net_by_day AS (
    SELECT c.variant_id, c.user_id, (c.created_at AT TIME ZONE 'UTC')::date AS day,
           sum(CASE WHEN c.conversion_type = 'refund' THEN -c.conversion_value
                    ELSE c.conversion_value END) AS amount
    FROM conversions AS c
    JOIN user_experiment_participation AS p
      ON p.user_id = c.user_id AND p.experiment_id = c.experiment_id
     AND p.variant_id = c.variant_id
    WHERE c.experiment_id = $1 AND c.conversion_value IS NOT NULL
    GROUP BY 1, 2, 3
)"""

# $2: the report's moment (exposures of the 7 days before it are "recent"); $3: the
# winsorisation percentile as a fraction, or NULL for none.
SELECT_VARIANTS = (
    "WITH"  # noqa: S608 - built from this module's constants only
    + NET_REVENUE_BY_DAY
    + """,
participants AS (
    SELECT variant_id, count(*) AS exposures,
           count(*) FILTER (WHERE has_converted) AS conversions,
           count(*) FILTER (WHERE first_exposure_date > $2::timestamptz - interval '7 days'
                              AND first_exposure_date <= $2::timestamptz) AS recent
    FROM user_experiment_participation WHERE experiment_id = $1 GROUP BY variant_id
),
net AS (
    SELECT variant_id, user_id, sum(amount) AS amount FROM net_by_day GROUP BY 1, 2
),
cap AS (
    SELECT round(percentile_cont($3::float8) WITHIN GROUP (ORDER BY amount)::numeric, 2) AS amount
    FROM net WHERE amount > 0 AND $3::float8 IS NOT NULL
),
capped AS (
    SELECT net.variant_id,
           CASE WHEN net.amount > cap.amount THEN cap.amount ELSE net.amount END AS amount
    FROM net CROSS JOIN cap
),
revenue AS (
    SELECT variant_id, sum(amount) AS total, sum(amount * amount) AS squares
    FROM capped GROUP BY variant_id
)
SELECT v.name, v.created_at,
       CASE WHEN jsonb_typeof(v.config_json -> 'weight') = 'number'
            THEN (v.config_json ->> 'weight')::float8 END AS weight,
       coalesce(p.exposures, 0) AS exposures, coalesce(p.conversions, 0) AS conversions,
       coalesce(p.recent, 0) AS recent, coalesce(r.total, 0) AS revenue,
       coalesce(r.squares, 0) AS revenue_squares, (SELECT amount FROM cap) AS revenue_cap
FROM variants AS v
LEFT JOIN participants AS p ON p.variant_id = v.id
LEFT JOIN revenue AS r ON r.variant_id = v.id
WHERE v.experiment_id = $1
ORDER BY v.created_at, v.name
"""
)

# Users who also saw a variant other than the one they are assigned to: the consumer stores
# such impressions with user_was_eligible = false.
SELECT_MULTIPLE_EXPOSURES = """
SELECT count(DISTINCT i.user_id)
FROM impressions AS i
JOIN user_experiment_participation AS p
  ON p.user_id = i.user_id AND p.experiment_id = i.experiment_id
WHERE i.experiment_id = $1 AND i.variant_id <> p.variant_id
"""

# What each UTC day added per variant: first exposures, first conversions, net revenue.
SELECT_DAILY = (
    "WITH"  # noqa: S608 - built from this module's constants only
    + NET_REVENUE_BY_DAY
    + """,
exposed AS (
    SELECT variant_id, (first_exposure_date AT TIME ZONE 'UTC')::date AS day,
           count(*) AS exposures
    FROM user_experiment_participation WHERE experiment_id = $1 GROUP BY 1, 2
),
converted AS (
    SELECT variant_id, (first_conversion_date AT TIME ZONE 'UTC')::date AS day,
           count(*) AS conversions
    FROM user_experiment_participation
    WHERE experiment_id = $1 AND has_converted AND first_conversion_date IS NOT NULL
    GROUP BY 1, 2
),
earned AS (
    SELECT variant_id, day, sum(amount) AS revenue FROM net_by_day GROUP BY 1, 2
),
days AS (
    SELECT variant_id, day FROM exposed UNION SELECT variant_id, day FROM converted
    UNION SELECT variant_id, day FROM earned
)
SELECT v.name, d.day, coalesce(e.exposures, 0) AS exposures,
       coalesce(k.conversions, 0) AS conversions, coalesce(r.revenue, 0) AS revenue
FROM days AS d
JOIN variants AS v ON v.id = d.variant_id
LEFT JOIN exposed AS e USING (variant_id, day)
LEFT JOIN converted AS k USING (variant_id, day)
LEFT JOIN earned AS r USING (variant_id, day)
ORDER BY d.day, v.name
"""
)


async def load(
    conn: asyncpg.Connection, name: str, as_of: datetime, winsorize: float | None = None
) -> tuple[ExperimentInfo, ExperimentData] | None:
    """The experiment called ``name`` and its data as of ``as_of``; None if there is none.
    ``winsorize`` is a percentile (e.g. 99) or None."""
    row = await conn.fetchrow(SELECT_EXPERIMENT, name)
    if row is None:
        return None
    level, mde = row["confidence_level"], row["minimum_detectable_effect"]
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
        minimum_detectable_effect=float(mde) if mde is not None else None,
    )
    fraction = winsorize / 100 if winsorize is not None else None
    rows = await conn.fetch(SELECT_VARIANTS, info.id, as_of, fraction)
    variants = tuple(
        VariantCounts(
            name=r["name"],
            created_at=r["created_at"],
            exposures=r["exposures"],
            conversions=r["conversions"],
            revenue=RevenueSums(
                r["exposures"], Decimal(r["revenue"]), Decimal(r["revenue_squares"])
            ),
            weight=r["weight"],
            recent_exposures=r["recent"],
        )
        for r in rows
    )
    daily = tuple(
        DailyCounts(r["day"], r["name"], r["exposures"], r["conversions"], Decimal(r["revenue"]))
        for r in await conn.fetch(SELECT_DAILY, info.id)
    )
    data = ExperimentData(
        variants=variants,
        daily=daily,
        multiple_exposure_users=await conn.fetchval(SELECT_MULTIPLE_EXPOSURES, info.id),
        revenue_cap=rows[0]["revenue_cap"] if rows else None,
        as_of=as_of,
    )
    return info, data


SELECT_NAMES = """
SELECT name FROM experiments ORDER BY created_at DESC, name LIMIT $1
"""


async def experiment_names(conn: asyncpg.Connection, limit: int) -> list[str]:
    """The names of the ``limit`` experiments created last."""
    return [r["name"] for r in await conn.fetch(SELECT_NAMES, limit)]
