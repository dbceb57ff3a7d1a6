"""Events for an experiment that does not exist yet are parked by the runtime and applied by
its pending retry once the experiment is created."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from consumers.apply import apply_in_transaction
from consumers.handlers.experiments import ExperimentsHandler
from consumers.types import Context
from tests.integration.experiments_helpers import (
    at,
    create_experiment,
    create_profile,
    events,
    item,
    participation,
)
from tests.support import PENDING, retry_for

HANDLERS = {"app": ExperimentsHandler()}


async def test_unknown_experiment_is_parked_then_applied_by_pending_retry(
    pool: asyncpg.Pool,
) -> None:
    user = await create_profile(pool, "ann@example.com")
    impression = item("impression", user, at(0), experiment="launch", variant="b")
    conversion = item("conversion", user, at(3), experiment="launch", variant="b")
    ctx = Context(environment="dev", now=datetime.now(UTC))
    report = await apply_in_transaction(
        pool, HANDLERS, events(impression, conversion), ctx, backoff_max_s=PENDING.backoff_max_s
    )
    assert [(s.disposition.value, s.reason) for s in report.settled] == [
        ("pending", "unknown experiment"),
        ("pending", "unknown experiment"),
    ]
    parked = await pool.fetch("SELECT event_id, reason FROM ingest_pending ORDER BY event_time")
    assert [(r["event_id"], r["reason"]) for r in parked] == [
        (impression["id"], "unknown experiment"),
        (conversion["id"], "unknown experiment"),
    ]

    retry = retry_for(pool, HANDLERS)
    still = await retry.run()
    assert still.totals() == {"applied": 0, "skipped": 0, "pending": 2, "dead": 0}

    seeded = await create_experiment(pool, "launch", variants=("a", "b"))
    done = await retry.run()
    assert done.totals() == {"applied": 2, "skipped": 0, "pending": 0, "dead": 0}
    part = await participation(pool, user)
    assert part is not None
    assert (part["variant_id"], part["total_impressions"], part["has_converted"]) == (
        seeded.variants["b"],
        1,
        True,
    )
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    assert await pool.fetchval("SELECT count(*) FROM conversion_attribution") == 1

    # A further pass and a redelivery of the same records change nothing.
    assert (await retry.run()).total("applied") == 0
    again = await apply_in_transaction(
        pool, HANDLERS, events(impression, conversion), ctx, backoff_max_s=PENDING.backoff_max_s
    )
    assert {s.disposition.value for s in again.settled} == {"duplicate"}
    assert await pool.fetchval("SELECT count(*) FROM impressions") == 1
    assert uuid.UUID(impression["id"]) == await pool.fetchval("SELECT id FROM impressions")
