"""End to end through the real broker and the consumer runtime: /events items and a
RevenueCat purchase, published as ingest builds them, applied by the runner; an impression
for an experiment created later is parked and applied by the runner's pending retry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from consumers.dlq import DeadLetterSink
from consumers.pending.retry import PendingRetry
from consumers.registry import build_handlers, topics_for
from consumers.runner import Runner
from consumers.service import build_runner
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from ingest.providers import revenuecat
from tests.integration.experiments_helpers import (
    RECEIVED_AT,
    at,
    create_experiment,
    create_profile,
    item,
    records,
)
from tests.support import publish


@pytest.fixture
async def runner(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Runner]:
    # PRODUCTION purchases are applied only by a production deployment.
    production = settings.with_overrides(environment="production")
    handlers = build_handlers(["experiments", "revenuecat"])
    consumer = make_consumer(production, *topics_for(production.topic_prefix, handlers))
    producer = make_producer(production)
    await consumer.start()
    await producer.start()
    try:
        dead_letters = DeadLetterSink.from_settings(production, producer)
        yield build_runner(production, handlers, pool, consumer, dead_letters)
    finally:
        await consumer.stop()
        await producer.stop()


async def step_until(runner: Runner, done: Callable[[int], Awaitable[bool]]) -> None:
    """Step the runner until ``done(records processed so far)`` holds."""
    deadline = asyncio.get_running_loop().time() + 30
    processed = 0
    while not await done(processed):
        assert asyncio.get_running_loop().time() < deadline, "records were not applied in time"
        report = await runner.step()
        processed += report.size if report else 0


async def test_events_and_purchase_through_the_runner(
    settings: Settings, pool: asyncpg.Pool, runner: Runner
) -> None:
    assert settings.kafka_bootstrap_servers is not None
    bootstrap = settings.kafka_bootstrap_servers
    checkout = await create_experiment(pool, "checkout")
    user = await create_profile(pool, "Ann@Example.com")
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ('u_ann', 'ann@example.com') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids"
        " (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)"
        " VALUES ('iurc_ann', $1, 'u_rc_ann', '{}', 0, 0)",
        user_id,
    )
    items = [
        item("impression", user, at(0), variant="treatment"),
        item("impression", user, at(1), variant="treatment"),
        item("impression", user, at(0), experiment="launch", variant="a"),
        item("conversion", user, at(2), variant="treatment", conversion_value=5),
    ]
    await publish(bootstrap, settings.topic_prefix, records(items))

    async def settled(processed: int) -> bool:
        count = await pool.fetchval(
            "SELECT (SELECT count(*) FROM ingest_inbox) + (SELECT count(*) FROM ingest_pending)"
        )
        return bool(count == len(items) + 1)

    await step_until(runner, settled)
    part = await pool.fetchrow(
        "SELECT variant_id, total_impressions, has_converted FROM user_experiment_participation"
    )
    assert part is not None
    assert dict(part) == {
        "variant_id": checkout.variants["treatment"],
        "total_impressions": 2,
        "has_converted": True,
    }
    parked = await pool.fetch("SELECT event_id, reason FROM ingest_pending")
    assert [(r["event_id"], r["reason"]) for r in parked] == [
        (items[2]["id"], "unknown experiment")
    ]

    purchase = {
        "id": str(uuid.uuid4()),
        "type": "INITIAL_PURCHASE",
        "app_user_id": "u_rc_ann",
        "original_app_user_id": "u_rc_ann",
        "price": 29.99,
        "environment": "PRODUCTION",
        "event_timestamp_ms": int(at(3).timestamp() * 1000),
    }
    body = {"api_version": "1.0", "event": purchase}
    # Delivered twice, as a provider retry would: one conversion only.
    for _ in range(2):
        await publish(bootstrap, settings.topic_prefix, revenuecat.build_records(body, RECEIVED_AT))

    async def purchased(processed: int) -> bool:
        return processed == 2  # the purchase and its redelivery

    await step_until(runner, purchased)
    values = await pool.fetch(
        "SELECT conversion_type, conversion_value::text AS value FROM conversions"
        " ORDER BY created_at"
    )
    assert [(r["conversion_type"], r["value"]) for r in values] == [
        ("conversion", "5.00"),
        ("purchase", "29.99"),
    ]

    launch = await create_experiment(pool, "launch", variants=("a", "b"))
    production = settings.with_overrides(environment="production")
    retry = PendingRetry.from_settings(production, pool, runner.handlers, runner.dead_letters)
    report = await retry.run()
    assert report.total("applied") == 1
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
    variant = await pool.fetchval(
        "SELECT variant_id FROM user_experiment_participation WHERE experiment_id = $1",
        launch.experiment,
    )
    assert variant == launch.variants["a"]
