"""The integer-keyed tables (seeds 000 and 001, docs/contract.md §6) and the ingest bookkeeping
tables exist with their documented columns: name, type, nullability, default, in order."""

from __future__ import annotations

import asyncpg
import pytest

NN = False
NULL = True
EPOCH_NOW = "EXTRACT(epoch FROM now())"

Column = tuple[str, str, bool, str | None]
Expected = dict[str, tuple[Column, ...]]

# Seeds 000 and 001 (SQLite REAL -> double precision, INTEGER PRIMARY KEY -> identity) and the
# tables docs/contract.md §6 defines for them.
USERS_WORLD: Expected = {
    "users": (
        ("id", "integer", NN, None),
        ("uid", "text", NN, None),
        ("email", "text", NN, None),
        ("created_at", "double precision", NN, EPOCH_NOW),
    ),
    "user_klaviyo_profiles": (
        ("id", "integer", NN, None),
        ("uid", "text", NN, None),
        ("klaviyo_id", "text", NN, None),
        ("user_id", "integer", NN, None),
        ("email", "text", NN, None),
        ("phone_number", "text", NULL, None),
        ("first_name", "text", NULL, None),
        ("last_name", "text", NULL, None),
        ("timezone", "text", NN, None),
        ("environment", "text", NN, None),
        ("created_at", "double precision", NN, None),
        ("updated_at", "double precision", NN, None),
    ),
    "user_revenue_cat_ids": (
        ("id", "integer", NN, None),
        ("uid", "text", NN, None),
        ("user_id", "integer", NN, None),
        ("revenue_cat_id", "text", NN, None),
        ("revenue_cat_attributes", "text", NN, None),
        ("created_at", "double precision", NN, None),
        ("checked_at", "double precision", NN, None),
    ),
    "user_notification_settings": (
        ("id", "integer", NN, None),
        ("user_id", "integer", NN, None),
        ("channel", "text", NN, None),
        ("enabled", "boolean", NN, None),
        ("created_at", "double precision", NN, EPOCH_NOW),
        ("updated_at", "double precision", NN, EPOCH_NOW),
    ),
    "user_notification_setting_stats": (
        ("channel", "text", NN, None),
        ("enabled", "boolean", NN, None),
        ("users", "integer", NN, "0"),
    ),
    "user_notification_setting_stats_members": (
        ("user_id", "integer", NN, None),
        ("channel", "text", NN, None),
        ("enabled", "boolean", NN, None),
    ),
}

BOOKKEEPING: Expected = {
    "ingest_inbox": (
        ("source", "text", NN, None),
        ("event_id", "text", NN, None),
        ("topic", "text", NULL, None),
        ("partition", "integer", NULL, None),
        ("offset", "bigint", NULL, None),
        ("processed_at", "timestamp with time zone", NN, "now()"),
        ("partition_key", "text", NULL, None),
    ),
    "ingest_pending": (
        ("source", "text", NN, None),
        ("event_id", "text", NN, None),
        ("event_type", "text", NN, None),
        ("event_time", "timestamp with time zone", NN, None),
        ("partition_key", "text", NN, None),
        ("payload", "jsonb", NN, None),
        ("reason", "text", NN, None),
        ("attempts", "integer", NN, "0"),
        ("parked_at", "timestamp with time zone", NN, "now()"),
        ("last_attempt_at", "timestamp with time zone", NULL, None),
        ("waits_for", "ARRAY", NN, "'{}'::text[]"),
        ("next_attempt_at", "timestamp with time zone", NN, "now()"),
        ("topic", "text", NULL, None),
        ("partition", "integer", NULL, None),
        ("offset", "bigint", NULL, None),
    ),
    "ingest_pending_wakes": (
        ("id", "bigint", NN, None),
        ("key", "text", NN, None),
        ("woken_at", "timestamp with time zone", NN, "now()"),
    ),
    "ingest_skipped": (
        ("source", "text", NN, None),
        ("event_id", "text", NN, None),
        ("event_type", "text", NN, None),
        ("event_time", "timestamp with time zone", NN, None),
        ("reason", "text", NN, None),
        ("skipped_at", "timestamp with time zone", NN, "now()"),
        ("partition_key", "text", NULL, None),
        ("payload", "jsonb", NULL, None),
        ("topic", "text", NULL, None),
        ("partition", "integer", NULL, None),
        ("offset", "bigint", NULL, None),
    ),
    "ingest_dead_letters": (
        ("id", "bigint", NN, None),
        ("source", "text", NULL, None),
        ("event_id", "text", NULL, None),
        ("topic", "text", NN, None),
        ("partition", "integer", NN, None),
        ("offset", "bigint", NN, None),
        ("error_class", "text", NN, None),
        ("error", "text", NN, None),
        ("dead_at", "timestamp with time zone", NN, "now()"),
        ("partition_key", "text", NULL, None),
    ),
    "ingest_replay_progress": (
        ("replay", "text", NN, None),
        ("topic", "text", NN, None),
        ("partition", "integer", NN, None),
        ("next_offset", "bigint", NN, None),
        ("end_offset", "bigint", NN, None),
        ("started_at", "timestamp with time zone", NN, "now()"),
        ("updated_at", "timestamp with time zone", NN, "now()"),
    ),
    "ingest_kit_versions": (
        ("user_profile_id", "uuid", NN, None),
        ("event_time", "timestamp with time zone", NN, None),
        ("event_id", "text", NN, None),
    ),
    "ingest_klaviyo_profile_versions": (
        ("klaviyo_id", "text", NN, None),
        ("event_time", "timestamp with time zone", NN, None),
    ),
    "ingest_notification_setting_versions": (
        ("user_id", "integer", NN, None),
        ("channel", "text", NN, None),
        ("event_time", "timestamp with time zone", NN, None),
    ),
    "ingest_rc_sync": (
        ("revenue_cat_id", "text", NN, None),
        ("intent", "jsonb", NULL, None),
        ("intent_at", "timestamp with time zone", NULL, None),
        ("refused", "jsonb", NN, "'{}'::jsonb"),
        ("synced_at", "timestamp with time zone", NULL, None),
    ),
    "ingest_revenuecat_ledger": (
        ("event_id", "text", NN, None),
        ("kind", "text", NN, None),
        ("revenue_cat_ids", "ARRAY", NN, None),
        ("occurred_at", "timestamp with time zone", NN, None),
        ("amount", "numeric(10,2)", NN, None),
        ("transaction_id", "text", NULL, None),
        ("details", "jsonb", NN, "'{}'::jsonb"),
        ("recorded_at", "timestamp with time zone", NN, "now()"),
    ),
    "ingest_revenuecat_experiment_map": (
        ("revenuecat_experiment_id", "text", NN, None),
        ("experiment_id", "uuid", NN, None),
        ("variant_names", "jsonb", NN, "'{}'::jsonb"),
        ("created_at", "timestamp with time zone", NN, "now()"),
    ),
}


COLUMNS = """
SELECT table_name::text AS table_name,
       column_name::text AS column_name,
       CASE
           WHEN data_type = 'USER-DEFINED' THEN udt_name::text
           WHEN data_type = 'character varying'
               THEN format('character varying(%s)', character_maximum_length)
           WHEN data_type = 'numeric' AND numeric_precision IS NOT NULL
               THEN format('numeric(%s,%s)', numeric_precision, numeric_scale)
           ELSE data_type::text
       END AS type,
       is_nullable = 'YES' AS nullable,
       column_default::text AS column_default
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = ANY($1::text[])
ORDER BY table_name, ordinal_position
"""


async def columns_of(pool: asyncpg.Pool, tables: list[str]) -> Expected:
    """The columns of `tables` as information_schema reports them, in declared order."""
    found: dict[str, list[Column]] = {}
    for row in await pool.fetch(COLUMNS, tables):
        found.setdefault(row["table_name"], []).append(
            (row["column_name"], row["type"], row["nullable"], row["column_default"])
        )
    return {table: tuple(cols) for table, cols in found.items()}


@pytest.mark.parametrize(
    "expected",
    [
        pytest.param(USERS_WORLD, id="seeds 000 and 001 and the project tables"),
        pytest.param(BOOKKEEPING, id="ingest bookkeeping"),
    ],
)
async def test_tables_have_their_documented_columns(pool: asyncpg.Pool, expected: Expected) -> None:
    assert await columns_of(pool, list(expected)) == expected


async def test_integer_keys_are_identities(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT table_name::text, column_name::text, identity_generation::text"
        " FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    )

    assert sorted(tuple(r) for r in rows) == [
        ("ingest_dead_letters", "id", "BY DEFAULT"),
        ("ingest_pending_wakes", "id", "BY DEFAULT"),
        ("user_klaviyo_profiles", "id", "BY DEFAULT"),
        ("user_notification_settings", "id", "BY DEFAULT"),
        ("user_revenue_cat_ids", "id", "BY DEFAULT"),
        ("users", "id", "BY DEFAULT"),
    ]
