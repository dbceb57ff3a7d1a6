"""Keeping the bookkeeping tables bounded: ``ingest_inbox``, ``ingest_skipped`` and
``ingest_dead_letters``.

The inbox only has to remember an event for as long as Kafka may deliver it again: the topic
retention (7 days in the shipped KafkaTopics) plus a margin for consumer groups reset to an
older offset (``INBOX_RETENTION_DAYS``). Skipped events (with the expired parked events an
operator may still replay) are kept ``SKIPPED_RETENTION_DAYS``, the local log of dead letters
``DEAD_LETTER_RETENTION_DAYS`` (the DLQ topic is the authority for replays). Rows older than
that are deleted in small batches so the prune never holds long locks against the consumers
writing to the same tables; each delete finds its rows through an index on the age column.
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

PRUNE_SKIPPED_BATCH = """
WITH doomed AS (
    SELECT source, event_id FROM ingest_skipped WHERE skipped_at < $1 LIMIT $2
)
DELETE FROM ingest_skipped AS s
USING doomed AS d
WHERE s.source = d.source AND s.event_id = d.event_id
"""

PRUNE_DEAD_LETTERS_BATCH = """
DELETE FROM ingest_dead_letters
WHERE id IN (SELECT id FROM ingest_dead_letters WHERE dead_at < $1 LIMIT $2)
"""


async def _prune(pool: asyncpg.Pool, statement: str, older_than: datetime, batch: int) -> int:
    total = 0
    while True:
        status = await pool.execute(statement, older_than, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total


async def prune_inbox(pool: asyncpg.Pool, older_than: datetime, batch: int = 10_000) -> int:
    """Delete inbox rows processed before ``older_than``; return how many went."""
    return await _prune(pool, PRUNE_BATCH, older_than, batch)


async def prune_skipped(pool: asyncpg.Pool, older_than: datetime, batch: int = 10_000) -> int:
    """Delete skipped (and expired) events recorded before ``older_than``."""
    return await _prune(pool, PRUNE_SKIPPED_BATCH, older_than, batch)


async def prune_dead_letters(pool: asyncpg.Pool, older_than: datetime, batch: int = 10_000) -> int:
    """Delete the local log of dead letters sent before ``older_than``."""
    return await _prune(pool, PRUNE_DEAD_LETTERS_BATCH, older_than, batch)
