"""The consumer vocabulary: decoded events, what a handler did with them, and the handler seam.

A handler is the one place that knows how one source's events change the database. The
runtime owns everything else: fetching, decoding, the inbox (dedupe), transactions, the
pending table, skipped, dead letters and offset commits. A handler that leaves work for later
says so in its :class:`Result` (``follow_up``); the runtime parks it, in its own scope.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record came from; travels with the event until its offset is committed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Event:
    """One decoded CloudEvents record."""

    source: str  # ce_source: revenuecat | klaviyo | kit | app
    id: str  # ce_id, the idempotency key
    type: str  # ce_type, e.g. revenuecat.INITIAL_PURCHASE
    time: datetime  # ce_time, the provider's event time (aware, UTC)
    partition_key: str
    data: Any  # the record value, decoded JSON
    received_at: datetime | None = None
    position: Position | None = None  # None when unknown (parked follow-up work)


class Outcome(enum.Enum):
    APPLIED = "applied"  # changed the database, or deliberately had no effect
    SKIPPED = "skipped"  # belongs to the other ENVIRONMENT, or to an ended experiment
    PENDING = "pending"  # its target row does not exist yet; parked and retried later


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event to park in the pending table until one of the ``waits_for`` keys appears
    (the 'kind:value' keys of :mod:`consumers.pending.waits`)."""

    event: Event
    reason: str
    waits_for: Sequence[str]


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    reason: str | None = None
    # PENDING only: the 'kind:value' keys whose insert can make the event apply
    # (consumers.pending.waits); a parked event is retried when one of them appears.
    waits_for: tuple[str, ...] = field(default=(), compare=False)
    # Work the handler leaves for later, whatever the outcome: events of their own that the
    # runtime parks in the same transaction (a purchase whose conversion waits for the
    # buyer's participation, say).
    follow_up: tuple[PendingEvent, ...] = field(default=(), compare=False)


APPLIED = Result(Outcome.APPLIED)


def skipped(reason: str) -> Result:
    return Result(Outcome.SKIPPED, reason)


def pending(reason: str, *waits_for: str) -> Result:
    return Result(Outcome.PENDING, reason, waits_for)


@dataclass(frozen=True, slots=True)
class Context:
    environment: str  # the ENVIRONMENT this deployment serves: dev | production
    now: datetime


class Handler(Protocol):
    """How one source's events change the database.

    ``apply`` runs inside the runtime's transaction, receives only events that were never
    applied before (the inbox has filtered redeliveries), in offset order, and returns one
    :class:`Result` per event in the same order. It must not commit, must batch its writes
    (no per-event round trips in the hot path) and must never let an event older than the
    stored state overwrite it. It never writes the runtime's tables: work it leaves for later
    goes in a result's ``follow_up``. It raises :class:`consumers.errors.PoisonError` for an
    event that can never apply; database errors propagate and the runtime classifies them.
    """

    source: str

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]: ...
