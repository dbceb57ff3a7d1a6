"""``ingester inbox prune`` forgets only what Kafka can no longer redeliver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from consumers.retention import prune_inbox


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
