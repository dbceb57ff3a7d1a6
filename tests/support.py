"""Helpers shared by the tests: settings with every endpoint configured, talking to the real
broker without a consumer group, and retrying parked events where nothing may be
dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumers.dlq import DeadLetterSink
from consumers.pending.policy import PendingPolicy
from consumers.pending.retry import PendingRetry
from consumers.types import Handler
from contract.records import Record
from core.kafka import send_all
from core.settings import Settings

# Every endpoint configured, with short secrets the in-process tests sign with.
CONFIGURED = Settings(
    revenuecat_authorization="Bearer rc",
    revenuecat_webhook_secret="rc-hmac",
    klaviyo_webhook_secret="kl",
    klaviyo_flow_token="flow",
    kit_webhook_secrets=("kit",),
    kit_legacy_token="legacy",
    events_api_key="ev",
)


async def read_records(bootstrap: str, topic: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Read ``count`` records of ``topic`` from the beginning of every partition.

    Fails (TimeoutError) when fewer arrive within ``timeout``; records come back ordered by
    (partition, offset).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        deadline = asyncio.get_running_loop().time() + timeout
        while not partitions:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topic {topic} does not exist")
            await asyncio.sleep(0.05)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Any] = []
        while len(found) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"read {len(found)} of {count} records from {topic}")
            batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batch.values():
                found.extend(records)
        return sorted(found, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()


async def publish(bootstrap: str, topic_prefix: str, records: Iterable[Record]) -> None:
    """Publish records to their streams' topics with ``acks=all`` and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await send_all(producer, topic_prefix, records)
    finally:
        await producer.stop()


class _NoSends:
    """A producer for code that must send nothing: a send fails the test."""

    async def send(self, topic: str, **record: Any) -> Any:
        raise AssertionError(f"unexpected record for {topic}: {record}")


NO_DEAD_LETTERS = DeadLetterSink(_NoSends(), "ingest.dlq.v1", "tests", 1.0)

PENDING = PendingPolicy.from_settings(Settings())  # the defaults of the settings


def retry_for(
    pool: asyncpg.Pool,
    handlers: Mapping[str, Handler],
    *,
    environment: str = "dev",
    policy: PendingPolicy = PENDING,
    scope: str = "",
) -> PendingRetry:
    """A retry of parked events that must dead-letter none of them."""
    return PendingRetry(
        pool,
        handlers,
        policy,
        NO_DEAD_LETTERS,
        environment=environment,
        topic_prefix="t.",
        scope=scope,
    )
