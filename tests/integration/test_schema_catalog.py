"""Enums, foreign keys (with their ON DELETE), unique constraints, indexes and the client view
are what the seeds and the common vocabulary say."""

from __future__ import annotations

import asyncpg

ENUMS = {
    "experiment_status_enum": ["draft", "active", "paused", "completed", "archived"],
    "device_type_enum": ["desktop", "mobile", "tablet", "tv", "wearable", "bot", "other"],
    "connection_type_enum": [
        "wifi",
        "cellular",
        "ethernet",
        "slow-2g",
        "2g",
        "3g",
        "4g",
        "5g",
        "offline",
        "other",
    ],
}

CASCADE = "CASCADE"
SET_NULL = "SET NULL"

# (table, column) -> (referenced table, ON DELETE)
FOREIGN_KEYS = {
    ("user_klaviyo_profiles", "user_id"): ("users", CASCADE),
    ("user_revenue_cat_ids", "user_id"): ("users", CASCADE),
    ("user_notification_settings", "user_id"): ("users", CASCADE),
    ("engagement_rewards", "user_id"): ("user_profiles", CASCADE),
    ("gem_transactions", "user_id"): ("user_profiles", CASCADE),
    ("quiz_attempts", "user_id"): ("user_profiles", CASCADE),
    ("quiz_results", "user_id"): ("user_profiles", CASCADE),
    ("referrals", "referrer_id"): ("user_profiles", CASCADE),
    ("referrals", "new_user_id"): ("user_profiles", CASCADE),
    ("user_engagement_tracking", "user_id"): ("user_profiles", CASCADE),
    ("user_engagements", "user_id"): ("user_profiles", CASCADE),
    ("variants", "experiment_id"): ("experiments", CASCADE),
    ("conversions", "user_id"): ("user_profiles", CASCADE),
    ("conversions", "variant_id"): ("variants", CASCADE),
    ("conversions", "experiment_id"): ("experiments", CASCADE),
    ("email_verification_tokens", "user_profile_id"): ("user_profiles", CASCADE),
    ("impressions", "user_id"): ("user_profiles", CASCADE),
    ("impressions", "variant_id"): ("variants", CASCADE),
    ("impressions", "experiment_id"): ("experiments", CASCADE),
    ("user_experiment_participation", "user_id"): ("user_profiles", CASCADE),
    ("user_experiment_participation", "experiment_id"): ("experiments", CASCADE),
    ("user_experiment_participation", "variant_id"): ("variants", CASCADE),
    ("conversion_attribution", "user_id"): ("user_profiles", CASCADE),
    ("conversion_attribution", "conversion_id"): ("conversions", CASCADE),
    ("conversion_attribution", "experiment_id"): ("experiments", CASCADE),
    ("conversion_attribution", "variant_id"): ("variants", CASCADE),
    ("ingest_kit_versions", "user_profile_id"): ("user_profiles", CASCADE),
    ("ingest_notification_setting_versions", "user_id"): ("users", CASCADE),
    ("ingest_rc_sync", "revenue_cat_id"): ("user_revenue_cat_ids", CASCADE),
    ("ingest_revenuecat_experiment_map", "experiment_id"): ("experiments", CASCADE),
}

UNIQUE = {
    ("users", ("uid",)),
    ("user_klaviyo_profiles", ("uid",)),
    ("user_klaviyo_profiles", ("klaviyo_id",)),
    ("user_klaviyo_profiles", ("user_id",)),
    ("user_revenue_cat_ids", ("uid",)),
    ("user_revenue_cat_ids", ("revenue_cat_id",)),
    ("user_notification_settings", ("user_id", "channel")),
    ("experiments", ("name",)),
    ("user_profiles", ("email",)),
    ("user_profiles", ("referral_code",)),
    ("referrals", ("new_user_id",)),
    ("variants", ("experiment_id", "name")),
    ("email_verification_tokens", ("token",)),
    ("user_experiment_participation", ("user_id", "experiment_id")),
    ("conversion_attribution", ("conversion_id",)),
}

CONSTRAINT_COLUMNS = """
SELECT c.conrelid::regclass::text AS table_name,
       array_agg(a.attname::text ORDER BY k.ord) AS columns,
       c.confrelid::regclass::text AS referenced,
       CASE c.confdeltype
           WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT'
           WHEN 'r' THEN 'RESTRICT' ELSE 'NO ACTION'
       END AS on_delete
FROM pg_constraint AS c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k (attnum, ord)
JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.contype::text = $1 AND c.connamespace = current_schema()::regnamespace
GROUP BY c.oid, c.conrelid, c.confrelid, c.confdeltype
"""


async def test_enums_have_the_pinned_values_in_order(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT t.typname::text AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)"
        " AS labels FROM pg_type AS t JOIN pg_enum AS e ON e.enumtypid = t.oid"
        " WHERE t.typnamespace = current_schema()::regnamespace GROUP BY t.typname"
    )

    assert {r["name"]: r["labels"] for r in rows} == ENUMS


async def test_foreign_keys_and_their_on_delete(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(CONSTRAINT_COLUMNS, "f")

    found = {}
    for r in rows:
        assert len(r["columns"]) == 1, r
        found[(r["table_name"], r["columns"][0])] = (r["referenced"], r["on_delete"])
    assert found == FOREIGN_KEYS


async def test_unique_constraints(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(CONSTRAINT_COLUMNS, "u")

    assert {(r["table_name"], tuple(r["columns"])) for r in rows} == UNIQUE


INDEXES = [
    (
        "user_revenue_cat_ids",
        "user_revenue_cat_ids_user_created_at_idx ON public.user_revenue_cat_ids"
        " USING btree (user_id, created_at)",
    ),
    ("users", "USING btree (lower(email))"),
    ("user_profiles", "USING btree (lower(email))"),
    ("ingest_pending", "USING btree (reason, source, parked_at)"),
    ("ingest_pending", "USING btree (partition_key)"),
    ("ingest_inbox", "USING btree (partition_key) WHERE (partition_key IS NOT NULL)"),
    ("ingest_inbox", "USING btree (processed_at)"),
    ("ingest_skipped", "USING btree (partition_key) WHERE (partition_key IS NOT NULL)"),
    ("ingest_dead_letters", "USING btree (partition_key) WHERE (partition_key IS NOT NULL)"),
    ("ingest_dead_letters", "USING btree (event_id) WHERE (event_id IS NOT NULL)"),
    ("ingest_pending", "USING btree (parked_at)"),
    ("ingest_pending", "USING gin (waits_for) WITH (fastupdate=off)"),
    ("ingest_pending", "USING btree (next_attempt_at, source, event_id)"),
    ("ingest_skipped", "USING btree (skipped_at)"),
    ("ingest_dead_letters", "USING btree (dead_at)"),
    ("ingest_rc_sync", "USING btree (intent_at) WHERE (intent IS NOT NULL)"),
    ("ingest_revenuecat_ledger", "USING gin (revenue_cat_ids) WITH (fastupdate=off)"),
    ("ingest_revenuecat_ledger", "USING btree (transaction_id) WHERE (transaction_id IS NOT NULL)"),
    ("conversions", "USING btree (((details ->> 'revenuecat_event_id'::text)))"),
]


async def test_indexes(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT tablename::text, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    )

    missing = [
        (table, fragment)
        for table, fragment in INDEXES
        if not any(r["tablename"] == table and fragment in r["indexdef"] for r in rows)
    ]
    assert missing == []


async def test_client_view_columns(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT column_name::text, data_type::text FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'user_client_revenue_cat_ids'"
        " ORDER BY ordinal_position"
    )

    assert [tuple(r) for r in rows] == [
        ("user_id", "integer"),
        ("revenue_cat_id", "text"),
        ("uid", "text"),
        ("created_at", "double precision"),
    ]


async def test_stats_start_with_every_channel_at_zero(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT channel, enabled, users FROM user_notification_setting_stats"
        " ORDER BY channel, enabled"
    )

    assert [tuple(r) for r in rows] == [
        (channel, enabled, 0) for channel in ("email", "push", "sms") for enabled in (False, True)
    ]
