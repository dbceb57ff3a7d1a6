"""RevenueCat refunds and their reversals against the experiments their purchase converted
in (docs/experiments.md, "Refunds"), read back through the experiment report's net revenue.
Each event is applied by the runtime in its own transaction and redelivered."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from consumers.apply import apply_in_transaction
from consumers.handlers.experiments import ExperimentsHandler
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.types import Event, Handler
from ingester.report import build
from ingester.report.render import as_dict
from tests.integration.experiments_helpers import Seeded, at, create_experiment, events, item
from tests.integration.test_experiments_purchases import PRODUCTION, make_buyer, purchase
from tests.support import PENDING

HANDLERS: dict[str, Handler] = {"revenuecat": RevenueCatHandler(), "app": ExperimentsHandler()}
TX = "100000000000000"


def refund(hours: float, amount: float = -9.99, **fields: Any) -> Event:
    return purchase(
        at(hours),
        type="CANCELLATION",
        cancel_reason="CUSTOMER_SUPPORT",
        price=amount,
        transaction_id=TX,
        **fields,
    )


def reversal(hours: float) -> Event:
    return purchase(at(hours), type="REFUND_REVERSED", price=9.99, transaction_id=TX)


async def deliver(pool: asyncpg.Pool, *batch: Event) -> list[str]:
    dispositions = []
    for event in batch:
        report = await apply_in_transaction(
            pool, HANDLERS, [event], PRODUCTION, backoff_max_s=PENDING.backoff_max_s
        )
        dispositions += [s.disposition.value for s in report.settled]
    return dispositions


async def net_revenue(pool: asyncpg.Pool, name: str = "checkout") -> dict[str, float]:
    async with pool.acquire() as conn:
        built = await build(conn, name)  # type: ignore[arg-type]  # a pooled Connection
    assert built is not None
    return {v["name"]: v["revenue"] for v in as_dict(*built)["variants"]}


async def refund_rows(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT r.user_id, r.experiment_id, r.variant_id, r.conversion_value,"
        " r.details->>'refunded_conversion_id' AS purchase, r.details->>'transaction_id' AS tx"
        " FROM conversions r WHERE r.conversion_type = 'refund' ORDER BY r.experiment_id"
    )
    return [tuple(r) for r in rows]


@pytest.fixture
async def exposed(pool: asyncpg.Pool) -> tuple[uuid.UUID, Seeded]:
    buyer = await make_buyer(pool)
    seeded = await create_experiment(pool, "checkout")
    await deliver(pool, *events(item("impression", buyer, at(0), variant="treatment")))
    return buyer, seeded


async def test_a_refund_and_its_reversal_change_net_revenue_exactly_once(
    pool: asyncpg.Pool, exposed: tuple[uuid.UUID, Seeded]
) -> None:
    buyer, seeded = exposed
    bought = purchase(at(1), transaction_id=TX)
    refunded, reversed_ = refund(2), reversal(3)

    assert await deliver(pool, bought, bought) == ["applied", "duplicate"]
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 9.99}

    assert await deliver(pool, refunded, refunded) == ["applied", "duplicate"]
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 0.0}
    conversion = await pool.fetchval(
        "SELECT id FROM conversions WHERE conversion_type = 'purchase'"
    )
    assert await refund_rows(pool) == [
        (
            buyer,
            seeded.experiment,
            seeded.variants["treatment"],
            Decimal("9.99"),
            str(conversion),
            TX,
        )
    ]
    # Refunds do not make anyone a converter, and have no attribution row.
    assert await pool.fetchval("SELECT count(*) FROM conversion_attribution") == 1

    assert await deliver(pool, reversed_, reversed_, refunded) == [
        "applied",
        "duplicate",
        "duplicate",
    ]
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 9.99}
    assert await refund_rows(pool) == []


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(("refund", "purchase", "impression"), id="refund before its purchase"),
        pytest.param(("purchase", "refund", "impression"), id="refund before the participation"),
        pytest.param(("impression", "refund", "purchase"), id="participation, refund, purchase"),
        pytest.param(("impression", "purchase", "refund"), id="in time order"),
    ],
)
async def test_a_refund_waits_in_the_ledger_for_its_purchase_and_participation(
    pool: asyncpg.Pool, order: tuple[str, ...]
) -> None:
    buyer = await make_buyer(pool)
    await create_experiment(pool, "checkout")
    batch = {
        "impression": events(item("impression", buyer, at(0), variant="treatment"))[0],
        "purchase": purchase(at(1), transaction_id=TX, price=20),
        "refund": refund(2, amount=-5),
    }
    assert await deliver(pool, *(batch[name] for name in order)) == ["applied"] * 3
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 15.0}
    assert len(await refund_rows(pool)) == 1


@pytest.mark.parametrize(
    "order",
    [
        pytest.param((0, 1, 2), id="purchase, refund, reversal"),
        pytest.param((0, 2, 1), id="the reversal before its refund"),
        pytest.param((2, 1, 0), id="reversal, refund, purchase"),
    ],
)
async def test_the_latest_of_refund_and_reversal_decides_in_any_order(
    pool: asyncpg.Pool, exposed: tuple[uuid.UUID, Seeded], order: Sequence[int]
) -> None:
    del exposed
    batch = [purchase(at(1), transaction_id=TX), refund(2), reversal(3)]
    await deliver(pool, *(batch[i] for i in order))
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 9.99}
    assert await refund_rows(pool) == []


async def test_refunds_follow_the_purchase_into_every_experiment_and_variant_move(
    pool: asyncpg.Pool, exposed: tuple[uuid.UUID, Seeded]
) -> None:
    buyer, seeded = exposed
    other = await create_experiment(pool, "pricing", variants=("a", "b"))
    await deliver(pool, purchase(at(1), transaction_id=TX), refund(2))
    # A late impression of another experiment converts the purchase there, with its refund;
    # an earlier exposure of the other variant moves both.
    await deliver(
        pool, *events(item("impression", buyer, at(0.5), experiment="pricing", variant="b"))
    )
    await deliver(pool, *events(item("impression", buyer, at(-1), variant="control")))
    assert await net_revenue(pool) == {"control": 0.0, "treatment": 0.0}
    assert await net_revenue(pool, "pricing") == {"a": 0.0, "b": 0.0}
    rows = await refund_rows(pool)
    assert sorted((r[1], r[2]) for r in rows) == sorted(
        [(seeded.experiment, seeded.variants["control"]), (other.experiment, other.variants["b"])]
    )
    purchases = await pool.fetch(
        "SELECT variant_id FROM conversions WHERE conversion_type = 'purchase' ORDER BY 1"
    )
    assert {r["variant_id"] for r in purchases} == {seeded.variants["control"], other.variants["b"]}
