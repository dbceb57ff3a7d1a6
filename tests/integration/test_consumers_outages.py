"""Hangs and bugs against the real broker and PostgreSQL: a frozen database, a lock held by
another connection, a handler raising KeyError, a poison flood, readiness with the broker
down."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY

from consumers import db, dlq
from consumers.registry import build_handlers, topics_for
from consumers.runner import Runner
from consumers.service import readiness_probe
from consumers.types import Context, Event, Handler, Result
from contract.topics import DLQ, topic_name
from core import devstack
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from core.topics import create_topics
from tests.integration.test_consumers_runner import (
    FAST_GROUP,
    applied_ids,
    kit_records,
    new_kit_profile,
    poison_records,
    runner_on,
    topic_size,
    until,
)
from tests.support import publish

# Small bounds so a hang turns into an outage within a second or two.
TIGHT = {
    "db_command_timeout_s": 1.0,
    "db_statement_timeout_s": 1.0,
    "db_lock_timeout_s": 0.2,
    "db_transaction_timeout_s": 2.0,
    "kafka_io_timeout_s": 2.0,
}


@asynccontextmanager
async def started(
    settings: Settings,
    pool: asyncpg.Pool,
    handlers: dict[str, Handler] | None = None,
) -> AsyncIterator[tuple[Runner, asyncio.Task[None], asyncio.Event]]:
    handlers = handlers or build_handlers(("kit",))
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers), **FAST_GROUP)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    runner = runner_on(settings, handlers, pool, consumer, producer)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, task, stop
    finally:
        stop.set()
        try:
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await consumer.stop()
            await producer.stop()


async def _true(value: bool) -> bool:
    return value


async def inbox_has(pool: asyncpg.Pool, ids: set[str | None]) -> bool:
    return ids <= await applied_ids(pool)


async def nothing_committed(runner: Runner) -> bool:
    committed = [await runner.consumer.committed(tp) for tp in runner.consumer.assignment()]
    return all(offset is None for offset in committed)


# -- a frozen database (SIGSTOP) -------------------------------------------------------------


def server_pids(data_dir: Path) -> list[int]:
    """The postmaster and every backend and auxiliary process of one server."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


@contextmanager
def frozen(data_dir: Path) -> Iterator[None]:
    pids = server_pids(data_dir)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
async def test_a_frozen_database_becomes_an_outage_and_catches_up(
    settings: Settings, private_postgres: devstack.EmbeddedPostgres
) -> None:
    settings = settings.with_overrides(database_url=private_postgres.dsn, **TIGHT)
    bootstrap = settings.kafka_bootstrap_servers or ""
    pool = await db.create_pool(settings)
    try:
        email = await new_kit_profile(pool)
        before, during = kit_records(email, 3), kit_records(email, 20, start=10)
        async with started(settings, pool) as (runner, task, _):
            await publish(bootstrap, settings.topic_prefix, before)
            await until(lambda: inbox_has(pool, {r.header("ce_id") for r in before}), "before")
            with frozen(private_postgres.data_dir):
                await publish(bootstrap, settings.topic_prefix, during)
                # Without the bounds the transaction would hang here for ever; with them it is
                # cut after DB_TRANSACTION_TIMEOUT_S (2 s). The wait is generous for load.
                await until(lambda: _true(runner.paused), "the runner to pause", timeout=30)
                assert REGISTRY.get_sample_value("consumer_paused") == 1
                assert not task.done()
                dlq_topic = topic_name(settings.topic_prefix, DLQ)
                assert await topic_size(bootstrap, dlq_topic) == 0
            ids = {r.header("ce_id") for r in during}
            await until(lambda: inbox_has(pool, ids), "the backlog after the thaw", timeout=30)
            await until(lambda: _true(not runner.paused), "the runner to resume")
            assert REGISTRY.get_sample_value("consumer_paused") == 0
        assert await pool.fetchval("SELECT count(*) FROM ingest_dead_letters") == 0
        assert await pool.fetchval("SELECT count(*) FROM ingest_inbox") == 23
    finally:
        await pool.close()


# -- a lock held by another connection -------------------------------------------------------


async def test_a_held_lock_times_out_into_the_outage_path_not_the_dlq(
    settings: Settings, database_url: str
) -> None:
    settings = settings.with_overrides(**TIGHT)
    bootstrap = settings.kafka_bootstrap_servers or ""
    pool = await db.create_pool(settings)
    locker = await asyncpg.connect(database_url)
    try:
        email = await new_kit_profile(pool)
        records = kit_records(email, 5)
        async with started(settings, pool) as (runner, task, _):
            pauses = REGISTRY.get_sample_value("consumer_pauses_total") or 0
            await locker.execute("BEGIN; LOCK TABLE user_profiles IN ACCESS EXCLUSIVE MODE")
            await publish(bootstrap, settings.topic_prefix, records)
            await until(lambda: _true(runner.paused), "lock_timeout to pause the runner")
            assert await nothing_committed(runner)
            await locker.execute("ROLLBACK")
            ids = {r.header("ce_id") for r in records}
            await until(lambda: inbox_has(pool, ids), "the records after the lock is gone")
            await until(lambda: _true(not runner.paused), "the runner to resume")
            assert (REGISTRY.get_sample_value("consumer_pauses_total") or 0) >= pauses + 1
            assert not task.done()
        dlq_topic = topic_name(settings.topic_prefix, DLQ)
        assert await topic_size(bootstrap, dlq_topic) == 0
        assert await pool.fetchval("SELECT count(*) FROM ingest_dead_letters") == 0
    finally:
        await locker.close()
        await pool.close()


# -- a handler bug ---------------------------------------------------------------------------


class BrokenKit:
    """A regression: reads a field every Kit payload lacks."""

    source = "kit"

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        return [event.data["no such field"] for event in events]


async def test_a_handler_raising_key_error_stops_the_runner_without_committing(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = settings.kafka_bootstrap_servers or ""
    email = await new_kit_profile(pool)
    await publish(bootstrap, settings.topic_prefix, kit_records(email, 4))
    async with started(settings, pool, {"kit": BrokenKit()}) as (runner, task, _):
        with pytest.raises(KeyError, match="no such field"):
            await asyncio.wait_for(asyncio.shield(task), 30)
        assert await nothing_committed(runner)
    assert any(
        r.levelname == "CRITICAL" and r.exc_info and r.exc_info[0] is KeyError
        for r in caplog.records
    )
    assert await topic_size(bootstrap, topic_name(settings.topic_prefix, DLQ)) == 0
    assert await pool.fetchval("SELECT count(*) FROM ingest_dead_letters") == 0
    assert await pool.fetchval("SELECT count(*) FROM ingest_inbox") == 0


# -- a poison flood holds -------------------------------------------------------------------


async def test_a_poison_flood_holds_not_ready_without_exiting(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # A kit-only consumer whose every record is poison: holding stalls no healthy source.
    settings = settings.with_overrides(poison_min_records=6)
    bootstrap = settings.kafka_bootstrap_servers or ""
    email = await new_kit_profile(pool)
    poison = [r for _ in range(3) for r in poison_records(email)]
    await publish(bootstrap, settings.topic_prefix, poison)
    async with started(settings, pool) as (runner, task, stop):
        await until(lambda: _true(runner.held is not None), "the runner to hold")
        assert REGISTRY.get_sample_value("consumer_poison_flood", {"source": "kit"}) == 1
        assert runner.ready is False
        assert not task.done()
        assert await nothing_committed(runner)
        stop.set()
        await asyncio.wait_for(task, 10)  # a hold ends cleanly on SIGTERM
    assert await topic_size(bootstrap, topic_name(settings.topic_prefix, DLQ)) == 0


async def test_replayed_dead_letters_that_fail_again_do_not_make_a_flood(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # The same batch as above, as `dlq replay` would send it back: each record carries its
    # replay count. They were poison before; failing again is no sign of a broken deployment.
    settings = settings.with_overrides(poison_min_records=6)
    bootstrap = settings.kafka_bootstrap_servers or ""
    email = await new_kit_profile(pool)
    poison = [
        dataclasses.replace(r, headers=(*r.headers, (dlq.REPLAY_COUNT, b"1")))
        for _ in range(3)
        for r in poison_records(email)
    ]
    await publish(bootstrap, settings.topic_prefix, poison)

    async def all_dead_again() -> bool:
        # The local DLQ log: the embedded broker undercounts a topic's multi-record batches.
        dead = await pool.fetchval("SELECT count(*) FROM ingest_dead_letters")
        return bool(dead >= len(poison))

    async with started(settings, pool) as (runner, task, stop):
        await until(all_dead_again, "every replayed record back in the DLQ")
        assert runner.held is None
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)


# -- readiness -----------------------------------------------------------------------------


async def test_readiness_fails_when_the_broker_is_down(
    settings: Settings, pool: asyncpg.Pool, private_broker: devstack.TansuBroker
) -> None:
    settings = settings.with_overrides(kafka_bootstrap_servers=private_broker.bootstrap)
    await create_topics(settings)
    handlers = build_handlers(("kit",))
    options: dict[str, Any] = {**FAST_GROUP, "request_timeout_ms": 2000}
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers), **options)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    runner = runner_on(settings, handlers, pool, consumer, producer)
    probe = readiness_probe(runner, pool, timeout_s=1.0)
    try:
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            await runner.step()
        assert await probe() == {"consumer": True, "broker": True, "database": True}
        await private_broker.stop()
        checks = await probe()
        assert checks["broker"] is False and checks["database"] is True
    finally:
        await runner.aclose()
        # The broker is gone: closing reports the connections and fetches it cannot finish
        # (aiokafka's fetcher surfaces its own cancelled fetch task).
        try:
            with contextlib.suppress(KafkaError, asyncio.CancelledError):
                await asyncio.wait_for(consumer.stop(), 30)
        finally:
            with contextlib.suppress(KafkaError, asyncio.CancelledError):
                await asyncio.wait_for(producer.stop(), 30)
