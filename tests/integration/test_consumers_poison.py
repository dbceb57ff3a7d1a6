"""Poison against the real broker and PostgreSQL: a parked event is buried only if it is
still parked, a long bisection keeps the loop live, a few poison records are dead-lettered
and committed, and a flooding source is alerted without stalling the healthy ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from prometheus_client import REGISTRY

from consumers import metrics
from consumers.decode import RawRecord
from consumers.dlq import DeadLetterSink
from consumers.errors import PoisonError
from consumers.pending.retry import PendingRetry
from consumers.registry import topics_for
from consumers.runner import Runner
from consumers.types import APPLIED, Context, Event, Handler, Result
from contract.records import Record, cloudevent
from contract.topics import DLQ, topic_name
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from tests.integration.stats_helpers import wait_until_waiting_on_a_lock
from tests.integration.test_consumers_handlers import apply, kit_event, rc_event, token
from tests.integration.test_consumers_runner import (
    FAST_GROUP,
    RECEIVED,
    applied_ids,
    kit_records,
    new_kit_profile,
    poison_records,
    runner_on,
    running,
    until,
)
from tests.support import PENDING, publish, read_records

# -- burying a parked event ------------------------------------------------------------------


class PoisonWhileAnotherReplicaApplies:
    """Fails every event it is given (naming the first), and the first time, before failing,
    sets another "replica" deleting ``taken``'s parked row the way applying it would, which
    waits for this transaction's row lock and commits once it rolls back."""

    source = "kit"

    def __init__(self, pool: asyncpg.Pool, taken: str) -> None:
        self.pool = pool
        self.taken = taken
        self.replica: asyncio.Task[None] | None = None

    async def apply_elsewhere(self, conn: asyncpg.Connection) -> None:
        await conn.execute("DELETE FROM ingest_pending WHERE event_id = $1", self.taken)

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        if self.replica is None:
            other = await self.pool.acquire()
            self.replica = asyncio.create_task(self._replica(other))
            await wait_until_waiting_on_a_lock(self.pool, other.get_server_pid())
        raise PoisonError("cannot apply", event_id=events[0].id)

    async def _replica(self, conn: Any) -> None:
        try:
            await self.apply_elsewhere(conn)
        finally:
            await self.pool.release(conn)


async def test_a_parked_event_applied_elsewhere_meanwhile_is_not_buried(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    gone, still = (
        kit_event(f"{token()}@example.com", "subscriber.bounced", t)
        for t in (
            "2024-05-01T00:00:00Z",
            "2024-05-02T00:00:00Z",
        )
    )
    for records in (gone, still):
        await apply(pool, records)  # parked: unknown email
    gone_id, still_id = gone[0].header("ce_id"), still[0].header("ce_id")
    handler = PoisonWhileAnotherReplicaApplies(pool, gone_id or "")

    producer = make_producer(settings)
    await producer.start()
    try:
        retry = PendingRetry(
            pool,
            {"kit": handler},
            PENDING,
            DeadLetterSink.from_settings(settings, producer),
            environment="dev",
            topic_prefix=settings.topic_prefix,
        )
        report = await retry.run()
        assert handler.replica is not None
        await handler.replica
    finally:
        await producer.stop()

    assert report.totals()["dead"] == 1
    dead = await pool.fetch("SELECT event_id FROM ingest_dead_letters")
    assert [r["event_id"] for r in dead] == [still_id]
    inbox = await pool.fetch("SELECT event_id FROM ingest_inbox")
    # The other replica's effect is remembered; the buried one is released for a replay.
    assert [r["event_id"] for r in inbox] == [gone_id]
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0


# -- a long bisection keeps the loop live -------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowPoison:
    """Every transaction takes 100 s of the runner's (hand-fed) clock; events whose value
    says ``bad`` fail without naming themselves, so only bisection finds them. Records at
    each call whether the loop looked stalled."""

    source = "kit"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.runner: Runner | None = None
        self.stalled: list[bool] = []

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        assert self.runner is not None
        self.stalled.append(self.runner.liveness.stalled())
        self.clock.now += 100.0
        if any(isinstance(e.data, dict) and e.data.get("bad") for e in events):
            raise PoisonError("a bad record somewhere in this slice")
        return [APPLIED] * len(events)


def kit_values(values: Sequence[dict[str, Any]]) -> list[Record]:
    return [
        cloudevent(
            source="kit",
            event_id=f"slow-{token()}",
            event_type="kit.subscriber.activated",
            time="2024-05-01T00:00:00Z",
            partition_key="one key, one partition",
            value=orjson.dumps(value),
            received_at=RECEIVED,
        )
        for value in values
    ]


@asynccontextmanager
async def runner_for(
    settings: Settings, pool: asyncpg.Pool, handlers: dict[str, Handler]
) -> AsyncIterator[Runner]:
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers), **FAST_GROUP)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    runner = runner_on(settings, handlers, pool, consumer, producer)
    try:
        yield runner
    finally:
        await runner.aclose()
        await consumer.stop()
        await producer.stop()


async def test_a_long_bisection_beats_the_liveness(settings: Settings, pool: asyncpg.Pool) -> None:
    # 300 s without a beat while a batch is in hand is a stall; the bisection below runs
    # a dozen transactions of 100 s each.
    settings = settings.with_overrides(liveness_stall_s=300.0, poison_max_share=1.0)
    clock = Clock()
    handler = SlowPoison(clock)
    records = kit_values([{"bad": i in (2, 5)} for i in range(8)])
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, records)
    async with runner_for(settings, pool, {"kit": handler}) as runner:
        handler.runner = runner
        runner.liveness.clock = clock
        runner.liveness.beat()
        fetched: list[RawRecord] = []
        while len(fetched) < len(records):
            fetched += await runner.fetch()
        report = await runner.process(fetched)
    assert len(handler.stalled) > 3, "the batch was bisected"
    assert len(report.dead) == 2
    assert not any(handler.stalled)


# -- poison among few records is dead-lettered, not a flood -----------------------------------


async def committed_offsets(runner: Runner) -> dict[int, int | None]:
    return {
        tp.partition: await runner.consumer.committed(tp) for tp in runner.consumer.assignment()
    }


async def test_cold_start_batch_of_three_poison_and_one_good_record(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Contract §6: poison goes to the DLQ and the rest commits. 3 dead of 4 records is no
    flood: a handful of records says nothing about a deployment."""
    email = await new_kit_profile(pool)
    undecodable = [poison_records(email)[0] for _ in range(3)]
    good = kit_records(email, 1)
    records = [undecodable[0], good[0], undecodable[1], undecodable[2]]
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, records)
    async with running(settings, pool, background=False) as runner:
        fetched: list[RawRecord] = []
        while len(fetched) < len(records):
            fetched += await runner.fetch()
        report = await runner.process(fetched)  # one batch, on a fresh consumer
        assert len(report.dead) == 3
        committed = await committed_offsets(runner)
        partition = fetched[0].partition  # one key: one partition
        assert committed[partition] == max(r.offset for r in fetched) + 1
        assert runner.held is None
    assert await applied_ids(pool) == {good[0].header("ce_id")}
    dead = await pool.fetch("SELECT event_id FROM ingest_dead_letters ORDER BY id")
    assert sorted(r["event_id"] for r in dead) == sorted(
        r.header("ce_id") or "" for r in undecodable
    )
    dlq_topic = topic_name(settings.topic_prefix, DLQ)
    letters = await read_records(settings.kafka_bootstrap_servers or "", dlq_topic, 3)
    assert len(letters) == 3


async def test_a_flooding_source_is_alerted_while_the_healthy_ones_go_on(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Kit floods while RevenueCat is healthy: holding the partitions would stall RevenueCat
    too, so Kit's poison is dead-lettered, everything commits and the gauge says Kit
    floods."""
    settings = settings.with_overrides(poison_min_records=8)  # small sample, small test
    metrics.POISON_FLOOD.labels("kit").set(0)  # the gauge is process-wide
    email = await new_kit_profile(pool)
    poison = [r for _ in range(5) for r in poison_records(email)]
    healthy = rc_event(f"rc_{token()}", 1_714_521_600_000)  # parked: unknown revenue cat id
    await publish(settings.kafka_bootstrap_servers or "", settings.topic_prefix, poison + healthy)
    async with running(settings, pool, ("kit", "revenuecat")) as runner:
        await until(
            lambda: _at_least(pool, "SELECT count(*) FROM ingest_dead_letters", len(poison)),
            "every poison record dead-lettered",
        )
        await until(
            lambda: _at_least(
                pool, "SELECT count(*) FROM ingest_inbox WHERE source = 'revenuecat'", 1
            ),
            "the healthy source applied",
        )
        assert REGISTRY.get_sample_value("consumer_poison_flood", {"source": "kit"}) == 1
        assert runner.held is None and runner.ready
        await until(lambda: _all_committed(runner), "every offset committed")


async def _at_least(pool: asyncpg.Pool, query: str, count: int) -> bool:
    return bool(await pool.fetchval(query) >= count)


async def _all_committed(runner: Runner) -> bool:
    tps = list(runner.consumer.assignment())
    ends = await runner.consumer.end_offsets(tps)
    committed = [await runner.consumer.committed(tp) or 0 for tp in tps]
    return all(c >= ends[tp] for c, tp in zip(committed, tps, strict=True))
