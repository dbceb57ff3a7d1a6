"""The operator console's reads of the DLQ topic and its mending actions: retry parked events
now (one, one reason, or all) and replay dead letters (one, or those a filter matches).

Retries go through :class:`~consumers.pending.retry.PendingRetry` (the consumers' own retry:
locks, outcomes, dead letters), each click bounded by ``PENDING_PASS_MAX_ROWS``; replays
through :func:`consumers.dlq.plan_replay` and :func:`consumers.operations.replay_records`
(``DLQ_MAX_REPLAYS`` holds). The DLQ is streamed a page at a time
(:func:`consumers.operations.stream_dead_letters`), never read whole. Nothing prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from consumers import db, dlq
from consumers.decode import RawRecord
from consumers.dlq import DeadLetterSink
from consumers.lookup import fetch_record
from consumers.operations import (
    DlqCursor,
    DlqPass,
    Replayed,
    dlq_topic,
    replay_records,
    stream_dead_letters,
)
from consumers.pending import browse
from consumers.pending import store as pending
from consumers.pending.policy import Budget
from consumers.pending.retry import PendingRetry, RetryReport
from consumers.registry import build_handlers
from consumers.types import Position
from contract.headers import CE_ID, CE_SOURCE
from core.settings import Settings

_START: browse.Cursor = ("", datetime.fromtimestamp(0, UTC), "")


def _retry(settings: Settings, pool: asyncpg.Pool, producer: Any) -> PendingRetry:
    dead_letters = DeadLetterSink.from_settings(settings, producer)
    return PendingRetry.from_settings(settings, pool, build_handlers(()), dead_letters)


async def retry_event(
    settings: Settings, pool: asyncpg.Pool, producer: Any, source: str, event_id: str
) -> RetryReport:
    """Retry one parked event now (nothing when it is no longer parked)."""
    async with db.connection(pool) as conn:
        rows = await browse.select_keys(conn, [(source, event_id)])
    return await _retry(settings, pool, producer).retry_rows(rows)


async def retry_reason(
    settings: Settings, pool: asyncpg.Pool, producer: Any, reason: str
) -> RetryReport:
    """Retry the parked events of ``reason`` now, a chunk at a time, at most
    ``PENDING_PASS_MAX_ROWS`` of them (``report.more`` when some are left)."""
    retry = _retry(settings, pool, producer)
    sources = list(build_handlers(()))
    report, cursor, left = RetryReport(), _START, settings.pending_pass_max_rows
    while left > 0:
        async with db.connection(pool) as conn:
            rows = await browse.select_reason(conn, reason, sources, cursor, min(left, 500))
        if not rows:
            return report
        report.add(await retry.retry_rows(rows))
        cursor, left = browse.cursor_of(rows[-1]), left - len(rows)
    report.more = True
    return report


async def retry_all(settings: Settings, pool: asyncpg.Pool, producer: Any) -> RetryReport:
    """Make every parked event due now and run one pass of at most
    ``PENDING_PASS_MAX_ROWS`` rows; the consumers' own passes take the rest."""
    retry = _retry(settings, pool, producer)
    async with db.connection(pool) as conn:
        await pending.make_all_due(conn, list(build_handlers(())))
    budget = Budget(max_rows=settings.pending_pass_max_rows, max_s=None)
    return await retry.run_pass(budget, expire=False)


# -- dead letters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """Which dead letters a page shows or a replay takes: substrings (any case) of the error
    class, of the source topic, of the event id or error message; empty matches all."""

    error: str = ""
    topic: str = ""
    text: str = ""

    def matches(self, d: dlq.Described) -> bool:
        return (
            self.error.lower() in d.error_class.lower()
            and self.topic.lower() in d.source.lower()
            and (self.text.lower() in d.event_id.lower() or self.text.lower() in d.error.lower())
        )


@dataclass(frozen=True, slots=True)
class DlqEntry:
    described: dlq.Described
    record: RawRecord


@dataclass(slots=True)
class DlqPage:
    """Up to ``limit`` matching dead letters; ``next`` is where the next page starts (None at
    the end); ``read`` the records fetched for it (at most the page's read budget)."""

    entries: list[DlqEntry] = field(default_factory=list)
    next: DlqCursor | None = None
    read: int = 0


async def dead_letter_page(
    settings: Settings,
    *,
    after: DlqCursor | None = None,
    match: DlqFilter | None = None,
    limit: int = 50,
    budget: int = 5000,
) -> DlqPage:
    """One page of the DLQ topic, streamed from ``after``: stops at ``limit`` matches or
    after ``budget`` records read, so a narrow filter over a large DLQ stays a bounded
    request (the page then ends early and ``next`` goes on from there)."""
    match, page, done = match or DlqFilter(), DlqPage(), DlqPass()
    async with aclosing(stream_dead_letters(settings, after=after, chunk=100, done=done)) as chunks:
        async for records in chunks:
            for record in records:
                page.read += 1
                page.next = (record.partition, record.offset)
                described = dlq.describe(record)
                if match.matches(described):
                    page.entries.append(DlqEntry(described, record))
                if len(page.entries) >= limit or page.read >= budget:
                    return page
    page.next = None
    return page


async def replay_one(settings: Settings, producer: Any, partition: int, offset: int) -> Replayed:
    """Re-publish the dead letter at ``partition``:``offset`` of the DLQ topic (fetched at that
    offset) to its source topic, unless it was replayed ``DLQ_MAX_REPLAYS`` times."""
    record = await fetch_record(settings, Position(dlq_topic(settings), partition, offset))
    if record is None:
        raise LookupError(f"no dead letter at {partition}:{offset} of {dlq_topic(settings)}")
    outcomes = [
        o async for o in replay_records(settings, producer, [record], False, None, DlqPass(), {})
    ]
    return outcomes[0]


@dataclass(slots=True)
class MatchingReplayed:
    replayed: list[Replayed] = field(default_factory=list)
    refused: int = 0
    applied_since: int = 0  # their events are in the inbox: applied after they died
    read: int = 0


async def replay_matching(
    settings: Settings, pool: asyncpg.Pool, producer: Any, match: DlqFilter, limit: int
) -> MatchingReplayed:
    """Replay up to ``limit`` dead letters ``match`` takes, streaming the DLQ from its start;
    a dead letter whose event was applied since (it is in the inbox) is passed over."""
    result, done = MatchingReplayed(), DlqPass()
    async with aclosing(stream_dead_letters(settings, done=done)) as chunks:
        async for records in chunks:
            chosen = [r for r in records if match.matches(dlq.describe(r))]
            applied = await _in_inbox(pool, chosen)
            result.applied_since += sum(1 for r in chosen if _key(r) in applied)
            chosen = [r for r in chosen if _key(r) not in applied]
            room = limit - len(result.replayed)
            result.replayed += [
                o
                async for o in replay_records(settings, producer, chosen, False, room, done, {})
                if o.plan is not None
            ]
            result.refused = done.refused
            if len(result.replayed) >= limit:
                break
    result.read = done.read
    return result


def _key(record: RawRecord) -> tuple[str, str]:
    return (record.header(CE_SOURCE) or "", record.header(CE_ID) or "")


IN_INBOX = """
SELECT i.source, i.event_id FROM ingest_inbox i
JOIN unnest($1::text[], $2::text[]) AS k(source, event_id)
  ON i.source = k.source AND i.event_id = k.event_id
"""


async def _in_inbox(pool: asyncpg.Pool, records: Sequence[RawRecord]) -> set[tuple[str, str]]:
    keys = [_key(r) for r in records]
    async with db.connection(pool) as conn:
        rows = await conn.fetch(IN_INBOX, [s for s, _ in keys], [i for _, i in keys])
    return {(r["source"], r["event_id"]) for r in rows}
