"""The rows a batch changes beyond its own: what moves when a first exposure, a variant or a
first conversion moves (docs/experiments.md, "Impressions and participation").

Run after the batch's own rows are written, so they fix those too. Each statement covers
every key of the batch that moved (``unnest`` of parallel arrays), and runs only when one did.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg

from consumers.handlers.experiment_plan import Key, Plan

CLEAR_FIRST_EXPOSURE = """
UPDATE impressions AS i SET is_first_exposure = false
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS d(user_id, experiment_id, keep_id)
WHERE i.user_id = d.user_id AND i.experiment_id = d.experiment_id
  AND i.is_first_exposure AND i.id <> d.keep_id
"""

CLEAR_FIRST_CONVERSION = """
UPDATE conversions AS c SET is_first_conversion_for_experiment = false
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS d(user_id, experiment_id, keep_id)
WHERE c.user_id = d.user_id AND c.experiment_id = d.experiment_id
  AND c.is_first_conversion_for_experiment AND c.id <> d.keep_id
"""

# An impression earlier than the stored first exposure moved it back: every conversion of
# that participation is now later after exposure, so its time_to_convert, its attribution
# hours and the participation's conversion_within_window are computed again.
RECOMPUTE_CONVERSIONS = """
WITH parts AS (
    SELECT p.user_id, p.experiment_id, p.first_exposure_date
    FROM user_experiment_participation AS p
    JOIN unnest($1::uuid[], $2::uuid[]) AS k(user_id, experiment_id)
      ON p.user_id = k.user_id AND p.experiment_id = k.experiment_id
), moved AS (
    UPDATE conversions AS c
    SET original_exposure_date = parts.first_exposure_date,
        time_to_convert = extract(epoch FROM c.created_at - parts.first_exposure_date)::int4
    FROM parts
    WHERE c.user_id = parts.user_id AND c.experiment_id = parts.experiment_id
    RETURNING c.id, c.user_id, c.experiment_id, c.time_to_convert,
              c.conversion_type <> 'refund'
              AND c.time_to_convert <= coalesce(c.conversion_window_days, 30) * 86400 AS within
), hours AS (
    UPDATE conversion_attribution AS a
    SET time_to_conversion_hours = moved.time_to_convert / 3600
    FROM moved
    WHERE a.conversion_id = moved.id
    RETURNING a.id
)
UPDATE user_experiment_participation AS p
SET conversion_within_window = w.within, updated_at = now()
FROM (SELECT user_id, experiment_id, bool_or(within) AS within FROM moved GROUP BY 1, 2) AS w
WHERE p.user_id = w.user_id AND p.experiment_id = w.experiment_id
"""

# A participation switched to another variant (an earlier exposure of it arrived): the
# impressions of the variant left become ineligible (as if they had arrived after the
# earlier one), those of the new variant that were marked so become eligible again; an
# impression the client itself excluded stays as it is.
# The reason is experiment_plan.INELIGIBLE_REASON.
SWITCH_IMPRESSIONS = """
UPDATE impressions AS i
SET user_was_eligible = (i.variant_id = k.variant_id),
    user_eligibility_status = CASE
        WHEN i.variant_id = k.variant_id
            THEN i.user_eligibility_status - 'reason' - 'assigned_variant_id'
        WHEN jsonb_typeof(i.user_eligibility_status) = 'object'
            THEN i.user_eligibility_status || jsonb_build_object(
                 'reason', 'assigned_to_other_variant', 'assigned_variant_id', k.variant_id::text)
        ELSE jsonb_build_object('reason', 'assigned_to_other_variant',
                 'assigned_variant_id', k.variant_id::text) END
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS k(user_id, experiment_id, variant_id)
WHERE i.user_id = k.user_id AND i.experiment_id = k.experiment_id
  AND CASE WHEN i.variant_id = k.variant_id
           THEN i.user_eligibility_status ->> 'reason' = 'assigned_to_other_variant'
           ELSE coalesce(i.user_was_eligible, true)
                OR i.user_eligibility_status ->> 'reason' = 'assigned_to_other_variant' END
"""

# ... its conversions (and their attribution rows) move with it. A first-party conversion
# keeps the variant it named in conversion_context.reported_variant when that is not the
# participation's (as when it applies after the earlier exposure).
MOVE_CONVERSIONS = """
WITH moved AS (
    UPDATE conversions AS c
    SET variant_id = k.variant_id,
        conversion_context = CASE
            WHEN c.details ? 'revenuecat_event_id' THEN c.conversion_context
            WHEN coalesce(c.conversion_context ->> 'reported_variant', ov.name) = nv.name
                THEN c.conversion_context - 'reported_variant'
            WHEN jsonb_typeof(c.conversion_context) = 'object'
                THEN c.conversion_context || jsonb_build_object('reported_variant',
                     coalesce(c.conversion_context ->> 'reported_variant', ov.name))
            WHEN c.conversion_context IS NULL
                THEN jsonb_build_object('reported_variant', ov.name)
            ELSE jsonb_build_object('value', c.conversion_context, 'reported_variant', ov.name)
        END
    FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) AS k(user_id, experiment_id, variant_id)
    JOIN variants AS nv ON nv.id = k.variant_id, variants AS ov
    WHERE c.user_id = k.user_id AND c.experiment_id = k.experiment_id
      AND c.variant_id <> k.variant_id AND ov.id = c.variant_id
    RETURNING c.id, c.variant_id
)
UPDATE conversion_attribution AS a SET variant_id = moved.variant_id
FROM moved WHERE a.conversion_id = moved.id
"""

# ... and total_impressions counts the eligible impressions of the new variant.
RECOUNT_IMPRESSIONS = """
UPDATE user_experiment_participation AS p
SET total_impressions = (
        SELECT count(*) FROM impressions AS i
        WHERE i.user_id = p.user_id AND i.experiment_id = p.experiment_id
          AND i.variant_id = p.variant_id AND coalesce(i.user_was_eligible, true)),
    updated_at = now()
FROM unnest($1::uuid[], $2::uuid[]) AS k(user_id, experiment_id)
WHERE p.user_id = k.user_id AND p.experiment_id = k.experiment_id
"""


def _moved(moved: Mapping[Key, uuid.UUID]) -> tuple[list[uuid.UUID], ...]:
    keys = sorted(moved)
    return [k[0] for k in keys], [k[1] for k in keys], [moved[k] for k in keys]


async def write(conn: asyncpg.Connection, plan: Plan) -> None:
    """Apply what moved in ``plan``: variants switched, then first exposures moved (the
    conversions' times follow), then first conversions moved."""
    if plan.variant_switched:
        switched = _moved(plan.variant_switched)
        await conn.execute(SWITCH_IMPRESSIONS, *switched)
        await conn.execute(MOVE_CONVERSIONS, *switched)
        await conn.execute(RECOUNT_IMPRESSIONS, *switched[:2])
    if plan.first_impression_moved:
        await conn.execute(CLEAR_FIRST_EXPOSURE, *_moved(plan.first_impression_moved))
        await conn.execute(RECOMPUTE_CONVERSIONS, *_moved(plan.first_impression_moved)[:2])
    if plan.first_conversion_moved:
        await conn.execute(CLEAR_FIRST_CONVERSION, *_moved(plan.first_conversion_moved))
