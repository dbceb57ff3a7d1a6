"""``ingester replay`` against the real broker and database: a window of every source's topic,
replayed into a fresh database, rebuilds the rows the live consumers wrote; replayed into the
live database it changes nothing; a stopped replay resumes; the window bounds what applies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from consumers import db
from consumers.dlq import DeadLetterSink
from consumers.operations import retry_pending
from consumers.registry import build_handlers, topics_for
from consumers.replay import ReplayProgress, Window, replay
from consumers.service import build_runner
from contract.topics import STREAMS
from core.config import parse
from core.kafka import make_consumer, make_producer
from core.settings import SETTINGS, Settings
from ingester.replay import replay_command
from tests.conftest import SessionStack, scratch_database
from tests.faults import dbstate
from tests.faults.poster import post_all
from tests.faults.workload import SECRETS, Workload, build
from tests.integration.ingest_harness import kafka_publisher, serving

pytestmark = pytest.mark.slow

# What each table is compared on: every column but the ones the database fills at apply time
# (wall-clock stamps) and keys numbered or drawn at insert (a Klaviyo profile's uid; experiments
# and variants are compared by name).
NAMES = (
    """JOIN experiments AS e ON e.id = t.experiment_id JOIN variants AS v ON v.id = t.variant_id"""
)
TABLES = {
    "users": "SELECT uid, email FROM users",
    "user_revenue_cat_ids": "SELECT uid, user_id, revenue_cat_id, revenue_cat_attributes"
    " FROM user_revenue_cat_ids",
    "user_klaviyo_profiles": "SELECT klaviyo_id, user_id, email, phone_number, first_name,"
    " last_name, timezone, environment FROM user_klaviyo_profiles",
    "user_notification_settings": "SELECT user_id, channel, enabled"
    " FROM user_notification_settings",
    "user_notification_setting_stats": "SELECT * FROM user_notification_setting_stats",
    "user_profiles": "SELECT id, email, kit_subscriber_id, kit_state FROM user_profiles",
    "impressions": f"SELECT t.id, t.user_id, e.name, v.name, t.impression_at, t.page_url"
    f" FROM impressions AS t {NAMES}",
    "conversions": f"SELECT t.user_id, e.name, v.name, t.conversion_type, t.conversion_value,"
    f" t.created_at FROM conversions AS t {NAMES}",
    "user_experiment_participation": f"SELECT t.user_id, e.name, v.name, t.first_exposure_date,"
    " t.total_impressions, t.has_converted, t.first_conversion_date,"
    f" t.conversion_within_window FROM user_experiment_participation AS t {NAMES}",
    "conversion_attribution": f"SELECT t.user_id, e.name, v.name, t.attribution_method,"
    f" t.conversion_value_attributed FROM conversion_attribution AS t {NAMES}",
    "ingest_inbox": "SELECT source, event_id FROM ingest_inbox",
    "ingest_pending": "SELECT source, event_id, reason FROM ingest_pending",
    "ingest_skipped": "SELECT source, event_id, reason FROM ingest_skipped",
}


async def rows(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: sorted((tuple(r) for r in await conn.fetch(query)), key=repr)
            for table, query in TABLES.items()
        }
    finally:
        await conn.close()


def production(settings: Settings) -> Settings:
    return settings.with_overrides(environment="production", **parse(SETTINGS, SECRETS))


async def apply_live(settings: Settings, pool: asyncpg.Pool, workload: Workload) -> None:
    """Post the workload through ingest and let a consumer apply all of it."""
    async with kafka_publisher(settings) as publisher, serving(settings, publisher) as base:
        posted = await post_all(lambda: base, workload.requests, rate=2000, concurrency=8)
    assert posted.accepted == len(workload.requests)
    handlers = build_handlers(())
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers))
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        runner = build_runner(
            settings, handlers, pool, consumer, DeadLetterSink.from_settings(settings, producer)
        )
        # Legacy Kit events get their ids at the door; the workload knows them by a name.
        wanted = {key for key in workload.by_key() if not key[1].startswith("legacy:")}
        deadline = asyncio.get_running_loop().time() + 60
        async with db.connection(pool) as conn:
            while not wanted <= await dbstate.processed_ids(conn):
                assert asyncio.get_running_loop().time() < deadline, "not applied in time"
                await runner.step()
        while await runner.step() is not None:
            pass  # the records left after the last wanted one
    finally:
        await consumer.stop()
        await producer.stop()


async def run(settings: Settings, window: Window) -> ReplayProgress:
    steps = [p async for p in replay(settings, window)]
    assert steps[-1].done
    return steps[-1]


@pytest.fixture
async def fresh_url(stack: SessionStack) -> AsyncIterator[str]:
    async with scratch_database(stack, template=stack.template) as dsn:
        yield dsn


async def test_a_window_replayed_into_a_fresh_database_rebuilds_the_live_rows(
    settings: Settings,
    pool: asyncpg.Pool,
    database_url: str,
    fresh_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    live = production(settings)
    workload = build(21, users=12, events=240)
    since = datetime.now(UTC) - timedelta(seconds=5)
    await dbstate.seed(database_url, workload.people, late=True)
    await dbstate.seed(fresh_url, workload.people, late=True)
    await apply_live(live, pool, workload)
    await retry_pending(live)
    expected = await rows(database_url)
    assert expected["ingest_inbox"] and expected["impressions"] and expected["ingest_skipped"]

    fresh = live.with_overrides(database_url=fresh_url)
    for stream in STREAMS:
        assert await replay_command(fresh, Window(stream, since, reapply=True)) == 0
    await retry_pending(fresh)

    assert await rows(fresh_url) == expected
    lines = capsys.readouterr()
    assert lines.out.count("replayed ") == len(STREAMS)
    assert "read 0 records" not in lines.out
    assert "100%" in lines.err  # the progress, a plain line per tenth off a terminal

    # Replayed into the live database, the inbox makes every event a no-op.
    again = await run(live, Window("kit", since))
    assert again.outcomes.keys() == {"duplicate"}
    assert await rows(database_url) == expected


async def test_a_stopped_replay_resumes_and_the_window_bounds_what_applies(
    settings: Settings, pool: asyncpg.Pool, database_url: str
) -> None:
    live = production(settings)
    workload = build(7, users=6, events=90)
    kit = [r for r in workload.requests if r.path.startswith("/webhooks/kit")]
    await dbstate.seed(database_url, workload.people, late=True)
    async with kafka_publisher(live) as publisher, serving(live, publisher) as base:
        await post_all(lambda: base, kit[: len(kit) // 2], rate=2000)
        await asyncio.sleep(0.05)  # a clear gap between the two halves' record times
        middle = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await post_all(lambda: base, kit[len(kit) // 2 :], rate=2000)

    second = sum(len(r.events) for r in kit[len(kit) // 2 :])
    window = Window("kit", middle - timedelta(hours=1))
    async with aclosing(replay(live, window)) as steps:
        async for first in steps:
            if first.read:
                break  # stopped after its first chunk
    assert not first.done
    rest = await run(live, window)
    assert rest.resumed and rest.total == first.total - first.read
    full = sum(rest.outcomes.values()) + sum(first.outcomes.values())
    assert full == first.total

    # A window after the first half applies only the second half's records.
    later = await run(live, Window("kit", middle, reapply=True))
    assert not later.resumed
    assert later.read - later.outside == second
    assert sum(later.outcomes.values()) == second
