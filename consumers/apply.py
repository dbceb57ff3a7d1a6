"""One transaction of the consumer loop: dedupe through the inbox, run the handlers, park
pending events and the follow-up work the handlers returned, record skipped ones.

The inbox insert and the handlers' writes commit together, so an event is either applied and
remembered, or neither: a redelivery after a crash finds it in the inbox and changes nothing.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg

from consumers import db, store
from consumers.errors import ConsumerError, PoisonError
from consumers.pending import store as pending
from consumers.types import Context, Event, Handler, Outcome, PendingEvent, Result

Handlers = Mapping[str, Handler]


class Disposition(enum.Enum):
    """What became of one event; the values are the ``outcome`` label of the metrics."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    PENDING = "pending"
    DEAD = "dead"


_OF_OUTCOME = {
    Outcome.APPLIED: Disposition.APPLIED,
    Outcome.SKIPPED: Disposition.SKIPPED,
    Outcome.PENDING: Disposition.PENDING,
}


@dataclass(frozen=True, slots=True)
class Settled:
    event: Event
    disposition: Disposition
    reason: str | None = None


@dataclass(slots=True)
class Report:
    """What one committed transaction did, for metrics and logs."""

    settled: list[Settled] = field(default_factory=list)
    latency_s: dict[str, float] = field(default_factory=dict)  # handler time per source


def split_duplicates(events: Sequence[Event]) -> tuple[list[Event], list[Event]]:
    """First occurrence of each (source, id) in offset order, and the repeats."""
    seen: set[tuple[str, str]] = set()
    first: list[Event] = []
    repeats: list[Event] = []
    for event in events:
        key = (event.source, event.id)
        (repeats if key in seen else first).append(event)
        seen.add(key)
    return first, repeats


def check_sources(events: Sequence[Event], handlers: Handlers) -> None:
    for event in events:
        if event.source not in handlers:
            raise PoisonError(f"no handler for ce_source {event.source!r}", event_id=event.id)


async def run_handlers(
    conn: asyncpg.Connection, handlers: Handlers, events: Sequence[Event], ctx: Context
) -> tuple[list[tuple[Event, Result]], dict[str, float]]:
    """Call each source's handler with its events, in offset order; one call per source."""
    by_source: dict[str, list[Event]] = {}
    for event in events:
        by_source.setdefault(event.source, []).append(event)
    outcomes: dict[tuple[str, str], Result] = {}
    latency: dict[str, float] = {}
    for source, group in by_source.items():
        started = time.perf_counter()
        results = await handlers[source].apply(conn, group, ctx)
        latency[source] = time.perf_counter() - started
        if len(results) != len(group):
            raise ConsumerError(
                f"handler for {source!r} returned {len(results)} results for {len(group)} events"
            )
        for event, result in zip(group, results, strict=True):
            outcomes[(event.source, event.id)] = result
    return [(e, outcomes[(e.source, e.id)]) for e in events], latency


async def park_results(
    conn: asyncpg.Connection,
    results: Sequence[tuple[Event, Result]],
    scope: str,
    *,
    backoff_max_s: float,
) -> None:
    """Park, in ``scope``, the follow-up work the handlers returned, then the events that
    are pending. Two statements: a follow-up may share its key with a pending event (a
    purchase's parked work, retried), and one statement cannot touch a row twice."""
    follow_up = [work for _, r in results for work in r.follow_up]
    await pending.park(conn, follow_up, scope, max_s=backoff_max_s)
    waiting = [
        PendingEvent(e, r.reason or "", r.waits_for)
        for e, r in results
        if r.outcome is Outcome.PENDING
    ]
    await pending.park(conn, waiting, scope, max_s=backoff_max_s)


async def apply_events(
    conn: asyncpg.Connection,
    handlers: Handlers,
    events: Sequence[Event],
    ctx: Context,
    *,
    scope: str = "",
    backoff_max_s: float,
    dedupe: bool = True,
) -> Report:
    """Apply fetched events inside the caller's transaction; a pending event that was parked
    before backs off up to ``backoff_max_s``. ``dedupe=False`` (``ingester replay
    --reapply``) runs the handlers even for events the inbox already holds."""
    check_sources(events, handlers)
    first, _ = split_duplicates(events)
    new_keys = await store.claim_inbox(conn, first, scope)
    fresh = [e for e in first if not dedupe or (e.source, e.id) in new_keys]
    applied, latency = await run_handlers(conn, handlers, fresh, ctx)
    await park_results(conn, applied, scope, backoff_max_s=backoff_max_s)
    await store.record_skipped(
        conn, [(e, r.reason or "") for e, r in applied if r.outcome is Outcome.SKIPPED], scope
    )
    report = Report(latency_s=latency)
    by_key = {(e.source, e.id): r for e, r in applied}
    for event in events:
        result = by_key.pop((event.source, event.id), None)
        if result is None:
            report.settled.append(Settled(event, Disposition.DUPLICATE))
        else:
            report.settled.append(Settled(event, _OF_OUTCOME[result.outcome], result.reason))
    return report


async def apply_in_transaction(
    pool: asyncpg.Pool,
    handlers: Handlers,
    events: Sequence[Event],
    ctx: Context,
    *,
    scope: str = "",
    timeout_s: float | None = None,
    backoff_max_s: float,
) -> Report:
    async with db.transaction(pool, timeout_s) as conn:
        return await apply_events(
            conn, handlers, events, ctx, scope=scope, backoff_max_s=backoff_max_s
        )
