"""Where a replay stands (``ingest_replay_progress``): per partition, the next offset to apply
and the end it stops at. The progress of a chunk is written in the transaction that applies
it, so a replay that stops (a crash, Ctrl-C, an outage) resumes exactly after what it
committed, even with ``--reapply``, which does not consult the inbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
from aiokafka import TopicPartition

LOAD = """
SELECT topic, partition, next_offset, end_offset
FROM ingest_replay_progress WHERE replay = $1
"""

RESET = "DELETE FROM ingest_replay_progress WHERE replay = $1"

START = """
INSERT INTO ingest_replay_progress (replay, topic, partition, next_offset, end_offset)
SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[])
"""

ADVANCE = """
UPDATE ingest_replay_progress
SET next_offset = greatest(next_offset, $4), updated_at = now()
WHERE replay = $1 AND topic = $2 AND partition = $3
"""


@dataclass(frozen=True, slots=True)
class Span:
    """What is left of one partition: offsets ``start`` (included) to ``end`` (excluded)."""

    start: int
    end: int

    @property
    def left(self) -> int:
        return max(0, self.end - self.start)


async def load(conn: asyncpg.Connection, replay: str) -> dict[TopicPartition, Span]:
    rows = await conn.fetch(LOAD, replay)
    return {
        TopicPartition(r["topic"], r["partition"]): Span(r["next_offset"], r["end_offset"])
        for r in rows
    }


def unfinished(spans: Mapping[TopicPartition, Span]) -> bool:
    return any(span.left for span in spans.values())


async def start(
    conn: asyncpg.Connection, replay: str, spans: Mapping[TopicPartition, Span]
) -> None:
    """Forget an earlier run of ``replay`` and record this one's spans."""
    await conn.execute(RESET, replay)
    tps = list(spans)
    await conn.execute(
        START,
        replay,
        [tp.topic for tp in tps],
        [tp.partition for tp in tps],
        [spans[tp].start for tp in tps],
        [spans[tp].end for tp in tps],
    )


async def advance(conn: asyncpg.Connection, replay: str, tp: TopicPartition, offset: int) -> None:
    """Everything of ``tp`` before ``offset`` is applied (never moves back)."""
    await conn.execute(ADVANCE, replay, tp.topic, tp.partition, offset)
