"""``ingester inbox prune`` forgets only what Kafka can no longer redeliver, and ages out
skipped events and the local dead-letter log after their own retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers.retention import prune_dead_letters, prune_inbox, prune_skipped
from core.settings import Settings
from ingester.bookkeeping import inbox_prune


async def test_prune_deletes_only_rows_older_than_the_cutoff(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    rows = [("kit", f"old-{i}", now - timedelta(days=40)) for i in range(25)]
    rows += [("kit", f"new-{i}", now - timedelta(days=1)) for i in range(5)]
    await pool.executemany(
        "INSERT INTO ingest_inbox (source, event_id, processed_at) VALUES ($1, $2, $3)", rows
    )

    deleted = await prune_inbox(pool, now - timedelta(days=30), batch=10)

    assert deleted == 25
    left = await pool.fetch("SELECT event_id FROM ingest_inbox ORDER BY event_id")
    assert [r["event_id"] for r in left] == [f"new-{i}" for i in range(5)]


async def test_prune_ages_out_skipped_events_and_the_dead_letter_log(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await pool.executemany(
        "INSERT INTO ingest_skipped (source, event_id, event_type, event_time, reason,"
        " skipped_at) VALUES ('kit', $1, 'kit.x', $2, $3, $2)",
        [(f"old-{i}", now - timedelta(days=100), "environment mismatch") for i in range(12)]
        + [("expired-old", now - timedelta(days=100), "expired: unknown email")]
        + [("new", now - timedelta(days=2), "environment mismatch")],
    )
    await pool.executemany(
        'INSERT INTO ingest_dead_letters (source, event_id, topic, partition, "offset",'
        " error_class, error, dead_at) VALUES ('kit', $1, 't', 0, 0, 'poison', 'bad', $2)",
        [(f"dead-{i}", now - timedelta(days=100)) for i in range(3)]
        + [("dead-new", now - timedelta(days=1))],
    )

    skipped = await prune_skipped(pool, now - timedelta(days=90), batch=5)
    dead = await prune_dead_letters(pool, now - timedelta(days=90), batch=2)

    assert (skipped, dead) == (13, 3)
    assert await pool.fetchval("SELECT array_agg(event_id) FROM ingest_skipped") == ["new"]
    assert await pool.fetchval("SELECT array_agg(event_id) FROM ingest_dead_letters") == [
        "dead-new"
    ]


async def test_inbox_prune_verb_covers_all_three_tables(
    pool: asyncpg.Pool, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    await pool.execute(
        "INSERT INTO ingest_inbox (source, event_id, processed_at) VALUES ('kit', 'a', $1)", old
    )
    await pool.execute(
        "INSERT INTO ingest_skipped (source, event_id, event_type, event_time, reason,"
        " skipped_at) VALUES ('kit', 'b', 'kit.x', $1, 'r', $1)",
        old,
    )
    await pool.execute(
        'INSERT INTO ingest_dead_letters (topic, partition, "offset", error_class, error,'
        " dead_at) VALUES ('t', 0, 0, 'poison', 'bad', $1)",
        old,
    )

    assert await inbox_prune(settings, settings.inbox_retention_days) == 0

    out = capsys.readouterr().out
    assert "deleted 1 inbox rows" in out
    assert "deleted 1 skipped events" in out
    assert "deleted 1 dead-letter log rows" in out
