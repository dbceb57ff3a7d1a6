"""Keeping ``ingest_inbox`` bounded.

The inbox only has to remember an event for as long as Kafka may deliver it again: the topic
retention (7 days in the shipped KafkaTopics) plus a margin for consumer groups reset to an
older offset. Rows older than that are deleted in small batches so the prune never holds
long locks against the consumers writing to the same table.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

PRUNE_BATCH = """
WITH doomed AS (
    SELECT source, event_id FROM ingest_inbox WHERE processed_at < $1 LIMIT $2
)
DELETE FROM ingest_inbox AS i
USING doomed AS d
WHERE i.source = d.source AND i.event_id = d.event_id
"""


async def prune_inbox(pool: asyncpg.Pool, older_than: datetime, batch: int = 10_000) -> int:
    """Delete inbox rows processed before ``older_than``; return how many went."""
    total = 0
    while True:
        status = await pool.execute(PRUNE_BATCH, older_than, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total
