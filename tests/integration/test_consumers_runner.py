"""The consumer runtime against the real broker and PostgreSQL: dead letters, a crash between
the database commit and the offset commit, a database outage, and SIGTERM mid-stream."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from consumers import dlq
from consumers.backoff import Backoff
from consumers.decode import RawRecord
from consumers.dlq import DeadLetterSink
from consumers.registry import build_handlers, topics_for
from consumers.runner import NO_HOOKS, Hooks, PoisonFlood, Runner
from consumers.service import build_runner, readiness_probe
from consumers.types import Handler
from contract.records import Record, cloudevent, rfc3339
from contract.topics import DLQ, topic_name
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from ingest.providers import kit, klaviyo_flow, revenuecat
from ingester.dlq import dlq_list, dlq_replay
from ingester.services import consume
from tests.support import publish, read_records

RECEIVED = "2024-06-01T00:00:00.000Z"
T0 = datetime(2024, 5, 1, tzinfo=UTC)
# The embedded broker makes a joining member wait about half the session timeout.
FAST_GROUP = {
    "session_timeout_ms": 1000,
    "heartbeat_interval_ms": 200,
    "rebalance_timeout_ms": 500,
}
FAST_BACKOFF = Backoff(initial_s=0.05, cap_s=0.5)


def token() -> str:
    return secrets.token_urlsafe(8)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def kit_records(email: str, count: int, start: int = 0) -> list[Record]:
    events = [
        {
            "id": f"kit-{token()}",
            "type": "subscriber.activated",
            "created": rfc3339(T0 + timedelta(seconds=start + i)),
            "data": {"subscriber": {"id": start + i, "email_address": email}},
        }
        for i in range(count)
    ]
    return [
        r
        for chunk in range(0, count, 100)
        for r in kit.build_records(
            {"delivery_id": 1, "events": events[chunk : chunk + 100]}, RECEIVED
        )
    ]


async def new_kit_profile(pool: asyncpg.Pool) -> str:
    email = f"{token().lower()}@example.com"
    await pool.execute("INSERT INTO user_profiles (email) VALUES ($1)", email)
    return email


async def applied_ids(pool: asyncpg.Pool, source: str = "kit") -> set[str]:
    rows = await pool.fetch("SELECT event_id FROM ingest_inbox WHERE source = $1", source)
    return {r["event_id"] for r in rows}


async def topic_size(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def runner_on(
    settings: Settings,
    handlers: Mapping[str, Handler],
    pool: asyncpg.Pool,
    consumer: Any,
    producer: Any,
    hooks: Hooks = NO_HOOKS,
) -> Runner:
    """The service's runner over started clients, backing off fast."""
    dead_letters = DeadLetterSink.from_settings(settings, producer)
    return build_runner(
        settings, handlers, pool, consumer, dead_letters, backoff=FAST_BACKOFF, hooks=hooks
    )


@asynccontextmanager
async def running(
    settings: Settings,
    pool: asyncpg.Pool,
    sources: Sequence[str] = ("kit",),
    *,
    hooks: Hooks = NO_HOOKS,
    background: bool = True,
) -> AsyncIterator[Runner]:
    """A runner on a fresh group member; in the background unless asked otherwise."""
    handlers = build_handlers(sources)
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers), **FAST_GROUP)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    runner = runner_on(settings, handlers, pool, consumer, producer, hooks)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop)) if background else None
    try:
        yield runner
    finally:
        stop.set()
        try:
            if task is not None:
                await task
        finally:
            await runner.aclose()
            await consumer.stop()
            await producer.stop()


# -- dead letters ------------------------------------------------------------------------


def poison_records(email: str) -> list[Record]:
    undecodable = cloudevent(
        source="kit",
        event_id=f"bad-json-{token()}",
        event_type="kit.subscriber.activated",
        time="2024-05-01T00:00:00Z",
        partition_key=email,
        value=b"{not json",
        received_at=RECEIVED,
    )
    # Decodes fine but PostgreSQL refuses the NUL in the email: a deterministic failure
    # that only retrying in halves can pin down.
    nul_id = f"nul-{token()}"
    nul = {
        "id": nul_id,
        "type": "subscriber.activated",
        "created": "2024-05-01T00:00:00Z",
        "data": {"subscriber": {"id": 1, "email_address": "nul\u0000@example.com"}},
    }
    unapplicable = cloudevent(
        source="kit",
        event_id=nul_id,
        event_type="kit.subscriber.activated",
        time="2024-05-01T00:00:00Z",
        partition_key=email,
        value=orjson.dumps(nul),
        received_at=RECEIVED,
    )
    return [undecodable, unapplicable]


async def test_poison_goes_to_the_dlq_with_headers_and_the_rest_applies(
    settings: Settings, pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings.with_overrides(dlq_max_replays=1)
    email = await new_kit_profile(pool)
    good = kit_records(email, 3)
    bad = poison_records(email)
    records = [good[0], bad[0], good[1], bad[1], good[2]]
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, records)
    dlq_topic = topic_name(settings.topic_prefix, DLQ)
    good_ids = {r.header("ce_id") for r in good}

    async with running(settings, pool):
        await until(lambda: _contains(pool, good_ids), "the good records")
        dead = await read_records(settings.kafka_bootstrap_servers or "", dlq_topic, 2)

    headers = [{k: v.decode() for k, v in r.headers} for r in dead]
    kit_topic = topic_name(settings.topic_prefix, "kit")
    by_id = {h["ce_id"]: h for h in headers}
    assert set(by_id) == {r.header("ce_id") for r in bad}
    undecodable = by_id[bad[0].header("ce_id")]
    unapplicable = by_id[bad[1].header("ce_id")]
    assert undecodable[dlq.ERROR_CLASS] == "DecodeError"
    assert "not JSON" in undecodable[dlq.ERROR]
    assert unapplicable[dlq.ERROR_CLASS] == "CharacterNotInRepertoireError"
    assert int(unapplicable[dlq.ATTEMPTS]) >= 2
    for h in headers:
        assert h[dlq.SOURCE_TOPIC] == kit_topic
        assert h[dlq.SOURCE_PARTITION].isdigit() and h[dlq.SOURCE_OFFSET].isdigit()
    originals = {r.header("ce_id"): r for r in bad}
    for record, h in zip(dead, headers, strict=True):
        assert record.value == originals[h["ce_id"]].value
        assert record.key == originals[h["ce_id"]].key
    assert await pool.fetchval("SELECT count(*) FROM ingest_dead_letters") == 2
    assert (
        await pool.fetchval("SELECT kit_state FROM user_profiles WHERE email = $1", email)
        == "active"
    )

    assert await dlq_list(settings) == 0
    listed = capsys.readouterr().out
    assert "DecodeError" in listed and "CharacterNotInRepertoireError" in listed
    assert "2 dead letter(s)" in listed

    assert await dlq_replay(settings, dry_run=True, limit=None) == 0
    assert "would replay 2 dead letter(s)" in capsys.readouterr().out
    async with running(settings, pool):
        assert await dlq_replay(settings, dry_run=False, limit=1) == 0
        assert await dlq_replay(settings, dry_run=False, limit=None) == 0
        again = await read_records(settings.kafka_bootstrap_servers or "", dlq_topic, 4)
    out = capsys.readouterr().out
    assert "replayed 1 dead letter(s)" in out
    replayed = [r for r in again[2:] if any(k == dlq.REPLAY_COUNT for k, _ in r.headers)]
    assert len(replayed) == 2 and all(
        RawRecord.of(r).header(dlq.REPLAY_COUNT) == "1" for r in replayed
    )
    # Both failed again and came back with replay count 1: a further replay refuses them.
    # The second replay above may already have met (and refused) the first of them.
    assert await dlq_replay(settings, dry_run=False, limit=None) == 0
    final = capsys.readouterr().out
    assert "replayed 0 dead letter(s)" in final
    refusals = re.findall(r"dead letter\(s\), refused (\d+)", out + final)
    assert sum(int(n) for n in refusals) == 2


async def _contains(pool: asyncpg.Pool, ids: set[str | None]) -> bool:
    return ids <= await applied_ids(pool)


# -- crash between the database commit and the offset commit ---------------------------------


class Crash(BaseException):
    """The process dying: nothing in the runner may handle it."""


async def test_a_crash_before_the_offset_commit_redelivers_without_double_effect(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ($1, $2) RETURNING id", f"u_{token()}", "c@x.io"
    )
    await pool.execute(
        "INSERT INTO user_notification_settings (user_id, channel, enabled)"
        " VALUES ($1, 'sms', true)",
        user_id,
    )
    rc_id = f"u_rc_{token()}"
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids (uid, user_id, revenue_cat_id, revenue_cat_attributes,"
        " created_at, checked_at) VALUES ($1, $2, $3, '{}', 0, 0)",
        f"iurc_{token()}",
        user_id,
        rc_id,
    )
    uid = await pool.fetchval("SELECT uid FROM users WHERE id = $1", user_id)
    records = [
        *klaviyo_flow.build_records(
            {
                "event_id": f"flow-{token()}",
                "occurred_at": "2024-01-01T00:00:00Z",
                "profile": {"id": f"01{token()}", "email": "c@x.io", "external_id": uid},
            },
            RECEIVED,
        ),
        *revenuecat.build_records(
            {
                "event": {
                    "id": f"rc-{token()}",
                    "type": "RENEWAL",
                    "app_user_id": rc_id,
                    "environment": "SANDBOX",
                    "event_timestamp_ms": 1_000,
                    "subscriber_attributes": {"plan": {"value": "pro", "updated_at_ms": 5}},
                }
            },
            RECEIVED,
        ),
    ]
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, records)
    sources = ("klaviyo", "revenuecat")

    async def crash(batch: Sequence[RawRecord]) -> None:
        raise Crash

    async def effects() -> tuple[Any, ...]:
        return (
            await pool.fetchval(
                "SELECT users FROM user_notification_setting_stats"
                " WHERE channel = 'sms' AND enabled"
            ),
            await pool.fetchval(
                "SELECT revenue_cat_attributes FROM user_revenue_cat_ids WHERE revenue_cat_id = $1",
                rc_id,
            ),
            await pool.fetchval("SELECT count(*) FROM user_klaviyo_profiles"),
        )

    applied = 0
    async with running(settings, pool, sources, hooks=Hooks(crash), background=False) as first:
        while applied < len(records):  # each crash leaves its batch applied, uncommitted
            with pytest.raises(Crash):
                while not await first.step():
                    pass
            applied = len(await applied_ids(pool, "klaviyo")) + len(
                await applied_ids(pool, "revenuecat")
            )
    after_crash = await effects()
    assert after_crash == (1, '{"plan":{"value":"pro","updated_at_ms":5}}', 1)

    async with running(settings, pool, sources, background=False) as second:
        seen: dict[str, int] = {}
        while sum(seen.values()) < len(records):
            report = await second.step()
            for outcome, count in (report.counts if report else {}).items():
                seen[outcome] = seen.get(outcome, 0) + count
        assert seen == {"duplicate": len(records)}
        assert await readiness_probe(second, pool)() == {
            "consumer": True,
            "broker": True,
            "database": True,
        }
        committed = [await second.consumer.committed(tp) for tp in second.consumer.assignment()]
        assert sum(c or 0 for c in committed) == len(records)
    assert await effects() == after_crash


# -- database outage -----------------------------------------------------------------------


@pytest.mark.slow
async def test_a_database_outage_pauses_and_dead_letters_nothing(
    settings: Settings, private_postgres: Any
) -> None:
    settings = settings.with_overrides(database_url=private_postgres.dsn)
    bootstrap = settings.kafka_bootstrap_servers or ""
    async with asyncpg.create_pool(private_postgres.dsn, min_size=1, max_size=4) as pool:
        email = await new_kit_profile(pool)
        before = kit_records(email, 3)
        during = kit_records(email, 20, start=10)
        async with running(settings, pool) as runner:
            await publish(bootstrap, settings.topic_prefix, before)
            await until(lambda: _contains(pool, {r.header("ce_id") for r in before}), "before")
            pauses = REGISTRY.get_sample_value("consumer_pauses_total") or 0

            await private_postgres.stop()
            started = time.monotonic()
            await publish(bootstrap, settings.topic_prefix, during)
            await until(lambda: _true(runner.paused), "the runner to pause")
            assert REGISTRY.get_sample_value("consumer_paused") == 1
            await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - started)))
            assert await topic_size(bootstrap, topic_name(settings.topic_prefix, DLQ)) == 0
            await private_postgres.start()

            await until(lambda: _contains(pool, {r.header("ce_id") for r in during}), "after")
            await until(lambda: _true(not runner.paused), "the runner to resume")
            assert REGISTRY.get_sample_value("consumer_pauses_total") == pauses + 1
        assert await topic_size(bootstrap, topic_name(settings.topic_prefix, DLQ)) == 0
        assert await pool.fetchval("SELECT count(*) FROM ingest_dead_letters") == 0
        assert await pool.fetchval("SELECT count(*) FROM ingest_inbox") == 23
        assert await pool.fetchval("SELECT event_id FROM ingest_kit_versions") == during[-1].header(
            "ce_id"
        )


async def _true(value: bool) -> bool:
    return value


# -- SIGTERM -------------------------------------------------------------------------------


async def test_sigterm_mid_stream_loses_nothing(settings: Settings, pool: asyncpg.Pool) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    emails = [await new_kit_profile(pool) for _ in range(3)]
    records = [r for email in emails for r in kit_records(email, 200)]
    ids = {r.header("ce_id") for r in records}
    settings = settings.with_overrides(consumer_batch_max=20)

    async def produce() -> None:
        for start in range(0, len(records), 50):
            await publish(bootstrap, settings.topic_prefix, records[start : start + 50])

    async def terminate_mid_stream() -> None:
        await until(lambda: _some_applied(pool), "the first batch")
        os.kill(os.getpid(), signal.SIGTERM)

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code, *_ = await asyncio.gather(
            consume(settings, ("kit",), consumer_options=FAST_GROUP),
            produce(),
            terminate_mid_stream(),
        )
    finally:
        root.handlers[:], root.level = handlers, level
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    assert code == 0

    # Every record the group committed past is applied, and nothing applied is uncommitted.
    kit_topic = topic_name(settings.topic_prefix, "kit")
    checker = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.consumer_group)
    await checker.start()
    try:
        tps = [TopicPartition(kit_topic, p) for p in checker.partitions_for_topic(kit_topic) or ()]
        committed = sum([(await checker.committed(tp)) or 0 for tp in tps])
    finally:
        await checker.stop()
    applied = await applied_ids(pool)
    assert 0 < len(applied) == committed

    async with running(settings, pool) as runner:
        await until(lambda: _contains(pool, ids), "the rest after a restart", timeout=30)
    assert await applied_ids(pool) == ids
    assert runner.paused is False


async def _some_applied(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM ingest_inbox"))


async def test_a_poison_flood_of_a_one_source_consumer_holds_instead_of_draining(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # Every source of this consumer (kit only) floods, so holding stalls nothing healthy.
    # A small minimum sample keeps the test small; the default is 100 records.
    settings = settings.with_overrides(poison_min_records=5)
    email = await new_kit_profile(pool)
    records = [r for _ in range(3) for r in poison_records(email)][:4] + kit_records(email, 1)
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, records)
    async with running(settings, pool, background=False) as runner:
        fetched: list[RawRecord] = []
        while len(fetched) < len(records):
            fetched += await runner.fetch()
        with pytest.raises(PoisonFlood, match="kit: 4 of the last 5 records"):
            await runner.process(fetched)
        tps = runner.consumer.assignment()
        assert [await runner.consumer.committed(tp) for tp in tps] == [None] * len(tps)
    dlq_topic = topic_name(settings.topic_prefix, DLQ)
    assert await topic_size(settings.kafka_bootstrap_servers or "", dlq_topic) == 0
