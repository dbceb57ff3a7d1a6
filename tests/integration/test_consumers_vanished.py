"""Partitions that no longer exist: the broker restarted empty (a dev broker; in production, a
topic deleted and re-created) while a batch was in hand, and the topics come back with fewer
partitions or not at all. The consumer drops the offsets it cannot commit, re-joins and
applies what arrives next."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiokafka import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumers.decode import RawRecord
from consumers.registry import build_handlers, topics_for
from consumers.runner import Hooks, Runner
from contract.records import Record
from contract.topics import topic_name
from core import devstack
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from core.topics import create_topics
from tests.integration.test_consumers_handlers import new_rc_id, new_user, rc_event
from tests.integration.test_consumers_runner import (
    FAST_GROUP,
    applied_ids,
    kit_records,
    new_kit_profile,
    runner_on,
    until,
)
from tests.support import publish


class Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts the assignments the member received."""

    def __init__(self) -> None:
        self.count = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.count += 1

    async def more_than(self, count: int) -> None:
        async def check() -> bool:
            return self.count > count

        await until(check, "an assignment", timeout=30)


@asynccontextmanager
async def consuming(
    settings: Settings, pool: asyncpg.Pool, listener: Assignments, hooks: Hooks
) -> AsyncIterator[Runner]:
    handlers = build_handlers(("kit", "revenuecat"))
    consumer = make_consumer(settings, **FAST_GROUP)
    consumer.subscribe(list(topics_for(settings.topic_prefix, handlers)), listener=listener)
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    runner = runner_on(settings, handlers, pool, consumer, producer, hooks)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        try:
            await task
        finally:
            await consumer.stop()
            await producer.stop()


async def test_a_batch_whose_partitions_are_gone_does_not_stall_the_consumer(
    settings: Settings, pool: asyncpg.Pool, private_broker: devstack.TansuBroker
) -> None:
    settings = settings.with_overrides(
        kafka_bootstrap_servers=private_broker.bootstrap, kafka_io_timeout_s=2.0
    )
    bootstrap = private_broker.bootstrap
    await create_topics(settings)  # 3 partitions each
    email = await new_kit_profile(pool)
    user_id, _ = await new_user(pool)
    rc_id = await new_rc_id(pool, user_id, {})
    listener = Assignments()
    restarted = asyncio.Event()

    async def restart_before_the_commit(records: Sequence[RawRecord]) -> None:
        # The batch is applied; before its offsets are committed the broker restarts empty
        # and this member re-joins the new broker's group, with the old topics' partitions
        # (its metadata is as old as the batch). The commit then names a topic that is gone.
        if restarted.is_set():
            return
        before = listener.count
        await private_broker.stop()
        await private_broker.start()
        await listener.more_than(before)
        restarted.set()

    async def applied(records: Sequence[Record]) -> bool:
        return {r.header("ce_id") for r in records} <= await applied_ids(pool, records[0].stream)

    async with consuming(settings, pool, listener, Hooks(restart_before_the_commit)) as runner:
        await listener.more_than(0)
        await publish(bootstrap, settings.topic_prefix, kit_records(email, 1))
        await asyncio.wait_for(restarted.wait(), 60)

        # One topic comes back, with fewer partitions; an event is posted to it.
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            rc_topic = topic_name(settings.topic_prefix, "revenuecat")
            await admin.create_topics([NewTopic(rc_topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        event = rc_event(rc_id, 1_714_521_600_000)
        await publish(bootstrap, settings.topic_prefix, event)
        await until(lambda: applied(event), "the event posted after the restart", timeout=30)
        assert runner.held is None
