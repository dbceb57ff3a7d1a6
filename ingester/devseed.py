"""Demo rows for the embedded dev database, so every ``ingester send-sample`` has a target.

Only ``ingester dev`` on the embedded PostgreSQL applies this; it is idempotent. The values
are the sample person of ``ingester.samples`` (one person across all providers).
"""

from __future__ import annotations

import asyncpg

from ingester.samples import (
    SAMPLE_EMAIL,
    SAMPLE_EXPERIMENT,
    SAMPLE_KLAVIYO_EXTERNAL_ID,
    SAMPLE_REVENUECAT_ID,
    SAMPLE_USER_ID,
    SAMPLE_VARIANTS,
)

SEED = """
INSERT INTO users (uid, email) VALUES ($1, $2) ON CONFLICT (uid) DO NOTHING;
"""

SEED_DEPENDENT = """
WITH u AS (SELECT id FROM users WHERE uid = $1)
INSERT INTO user_revenue_cat_ids
    (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)
SELECT 'iurc_sample_1', u.id, $2, '{}', extract(epoch FROM now()), extract(epoch FROM now())
FROM u
ON CONFLICT (revenue_cat_id) DO NOTHING
"""

SEED_SETTINGS = """
INSERT INTO user_notification_settings (user_id, channel, enabled)
SELECT id, 'email', true FROM users WHERE uid = $1
ON CONFLICT (user_id, channel) DO NOTHING
"""

SEED_PROFILE = """
INSERT INTO user_profiles (id, email) VALUES ($1::uuid, $2) ON CONFLICT DO NOTHING
"""

SEED_EXPERIMENT = """
INSERT INTO experiments (name, description, is_active, status, started_at, target_sample_size)
VALUES ($1, 'Sample experiment of the dev stack', true, 'active',
        now() - interval '30 days', 1000)
ON CONFLICT (name) DO NOTHING
"""

SEED_VARIANTS = """
INSERT INTO variants (experiment_id, name, created_at)
SELECT e.id, v.name, now() - interval '30 days' + v.ord * interval '1 second'
FROM experiments e, unnest($2::text[]) WITH ORDINALITY AS v (name, ord)
WHERE e.name = $1
ON CONFLICT (experiment_id, name) DO NOTHING
"""


async def seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(SEED, SAMPLE_KLAVIYO_EXTERNAL_ID, SAMPLE_EMAIL)
            await conn.execute(SEED_DEPENDENT, SAMPLE_KLAVIYO_EXTERNAL_ID, SAMPLE_REVENUECAT_ID)
            await conn.execute(SEED_SETTINGS, SAMPLE_KLAVIYO_EXTERNAL_ID)
            await conn.execute(SEED_PROFILE, SAMPLE_USER_ID, SAMPLE_EMAIL)
            await conn.execute(SEED_EXPERIMENT, SAMPLE_EXPERIMENT)
            await conn.execute(SEED_VARIANTS, SAMPLE_EXPERIMENT, list(SAMPLE_VARIANTS))
    finally:
        await conn.close()
