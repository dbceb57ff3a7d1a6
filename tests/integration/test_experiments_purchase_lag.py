"""Purchases do not depend on topic lag (docs/experiments.md, "Under lag and concurrency"):
the RevenueCat and experiments topics are applied in every relative order, one event per
transaction as the runtime applies them, and the conversions end the same; a purchase and a
participation committed at the same moment see each other."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from consumers import db
from consumers.apply import apply_in_transaction
from consumers.handlers.experiments import ExperimentsHandler
from consumers.handlers.purchases import conversion_id
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.types import Event, Handler
from tests.integration.experiments_helpers import (
    Seeded,
    at,
    context,
    create_experiment,
    events,
    item,
    snapshot,
)
from tests.integration.test_experiments_purchases import PRODUCTION, make_buyer, purchase
from tests.support import PENDING

HANDLERS: dict[str, Handler] = {"revenuecat": RevenueCatHandler(), "app": ExperimentsHandler()}
TABLES = "impressions, conversions, conversion_attribution, user_experiment_participation"


async def apply_one_by_one(pool: asyncpg.Pool, batch: Sequence[Event]) -> dict[str, Any]:
    """A fresh start, then each event in its own transaction, as a consumer applies it."""
    await pool.execute(f"TRUNCATE {TABLES}, ingest_inbox, ingest_revenuecat_ledger")
    for event in batch:
        await apply_in_transaction(
            pool, HANDLERS, [event], PRODUCTION, backoff_max_s=PENDING.backoff_max_s
        )
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    return await snapshot(pool)


async def converted(pool: asyncpg.Pool) -> set[tuple[uuid.UUID, str]]:
    rows = await pool.fetch(
        "SELECT c.experiment_id, v.name FROM conversions c JOIN variants v ON v.id = c.variant_id"
        " WHERE c.conversion_type = 'purchase'"
    )
    return {(r["experiment_id"], r["name"]) for r in rows}


@pytest.fixture
async def two(pool: asyncpg.Pool) -> tuple[uuid.UUID, Seeded, Seeded]:
    buyer = await make_buyer(pool)
    return buyer, await create_experiment(pool, "e1"), await create_experiment(pool, "e2")


async def test_a_late_impression_of_a_second_experiment_gets_the_conversion(
    pool: asyncpg.Pool, two: tuple[uuid.UUID, Seeded, Seeded]
) -> None:
    """(a) Buyer in E1; a purchase at 10:05 applies; an E2 impression at 10:00 arrives after
    it: E2 converts too, as when the impression comes first."""
    buyer, e1, e2 = two
    in_e1 = events(item("impression", buyer, at(-1), experiment="e1"))[0]
    in_e2 = events(item("impression", buyer, at(0), experiment="e2", variant="treatment"))[0]
    bought = purchase(at(5 / 60))

    lagging = await apply_one_by_one(pool, [in_e1, bought, in_e2])
    assert await converted(pool) == {(e1.experiment, "control"), (e2.experiment, "treatment")}
    assert await apply_one_by_one(pool, [in_e1, in_e2, bought]) == lagging


async def test_a_late_earlier_first_exposure_converts_the_purchase(
    pool: asyncpg.Pool, two: tuple[uuid.UUID, Seeded, Seeded]
) -> None:
    """(b) Buyer first seen in E at 10:10; a purchase at 10:05 applies (no conversion: exposed
    after it); the real first exposure (10:00) arrives late and moves the participation
    back: the purchase converts, as in every other order."""
    buyer, e1, _ = two
    seen = events(item("impression", buyer, at(10 / 60), experiment="e1"))[0]
    first = events(item("impression", buyer, at(0), experiment="e1"))[0]
    bought = purchase(at(5 / 60))

    await apply_one_by_one(pool, [seen, bought])
    assert await converted(pool) == set()
    lagging = await apply_one_by_one(pool, [seen, bought, first])
    assert await converted(pool) == {(e1.experiment, "control")}
    row = await pool.fetchrow("SELECT time_to_convert, original_exposure_date FROM conversions")
    assert row is not None and tuple(row) == (5 * 60, at(0))
    for order in itertools.permutations([seen, bought, first]):
        assert await apply_one_by_one(pool, order) == lagging, [e.type for e in order]


async def test_a_late_earlier_exposure_to_another_variant_moves_the_purchase(
    pool: asyncpg.Pool, two: tuple[uuid.UUID, Seeded, Seeded]
) -> None:
    buyer, e1, _ = two
    seen = events(item("impression", buyer, at(1), experiment="e1", variant="treatment"))[0]
    first = events(item("impression", buyer, at(0), experiment="e1", variant="control"))[0]
    bought, renewed = purchase(at(0.5)), purchase(at(2), type="RENEWAL")
    expected = await apply_one_by_one(pool, [first, seen, bought, renewed])
    assert await converted(pool) == {(e1.experiment, "control")}
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 2
    for order in itertools.permutations([seen, bought, first, renewed]):
        assert await apply_one_by_one(pool, order) == expected


async def test_redelivered_purchase_and_impression_convert_once(
    pool: asyncpg.Pool, two: tuple[uuid.UUID, Seeded, Seeded]
) -> None:
    buyer, e1, _ = two
    impression = events(item("impression", buyer, at(0), experiment="e1"))[0]
    bought = purchase(at(1))
    await apply_one_by_one(pool, [bought, impression])
    for event in (bought, impression, bought):
        report = await apply_in_transaction(
            pool, HANDLERS, [event], PRODUCTION, backoff_max_s=PENDING.backoff_max_s
        )
        assert [s.disposition.value for s in report.settled] == ["duplicate"]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 1
    assert await pool.fetchval("SELECT id FROM conversions") == conversion_id(
        bought.id, e1.experiment
    )


async def waiting_on_lock(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
    )


async def until_blocked(pool: asyncpg.Pool, task: asyncio.Task[None]) -> None:
    for _ in range(400):
        if task.done() or await waiting_on_lock(pool):
            break
        await asyncio.sleep(0.025)
    assert not task.done(), "the second transaction did not wait for the first"


@pytest.mark.parametrize(
    "purchase_first", [True, False], ids=["purchase first", "impression first"]
)
async def test_a_purchase_and_a_participation_committing_together_see_each_other(
    pool: asyncpg.Pool, two: tuple[uuid.UUID, Seeded, Seeded], purchase_first: bool
) -> None:
    """One transaction holds the purchase (or the new participation) uncommitted while the
    other applies: the second waits for the buyer's lock, then sees the first's rows."""
    buyer, e1, _ = two
    impression = events(item("impression", buyer, at(0), experiment="e1"))
    bought = [purchase(at(1))]

    async def revenuecat(conn: asyncpg.Connection) -> None:
        await RevenueCatHandler().apply(conn, bought, PRODUCTION)

    async def experiments(conn: asyncpg.Connection) -> None:
        await ExperimentsHandler().apply(conn, impression, context())

    first, second = (revenuecat, experiments) if purchase_first else (experiments, revenuecat)
    async with db.transaction(pool) as conn:
        await first(conn)

        async def then() -> None:
            async with db.transaction(pool) as other:
                await second(other)

        racing = asyncio.create_task(then())
        await until_blocked(pool, racing)
    await racing
    assert await converted(pool) == {(e1.experiment, "control")}
