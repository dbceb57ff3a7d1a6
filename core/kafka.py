"""Kafka client factories: every producer and consumer of the project is built here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contract.records import Record
from contract.topics import topic_name
from core.settings import Settings


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An unstarted producer with ``acks=all`` and a small linger so concurrent sends share
    batches (the ingest publisher builds its batches itself, see ``ingest.batches``).
    Idempotence follows ``KAFKA_IDEMPOTENT_PRODUCER`` (the embedded broker rejects
    InitProducerId, so dev and tests turn it off); batches are compressed with
    ``KAFKA_COMPRESSION`` (lz4 and zstd need the ``cramjam`` package, a dependency)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "linger_ms": 5,
        # One /events request (500 items) is larger than the 16 KiB default batch; with
        # small batches its records queue behind each other (docs/benchmarks.md).
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": max(1000, int(settings.produce_timeout_s * 1000)),
        "compression_type": None
        if settings.kafka_compression == "none"
        else settings.kafka_compression,
        "client_id": "ingester",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


class StartOnSend:
    """A producer made and started by the first send, for a command that may have nothing
    to send and must then need neither the broker nor its address (``pending retry``
    dead-letters only what fails). :meth:`stop` stops it if it was made."""

    def __init__(self, make: Callable[[], AIOKafkaProducer]) -> None:
        self._make = make
        self._producer: AIOKafkaProducer | None = None

    async def send(self, topic: str, **kwargs: Any) -> Any:
        if self._producer is None:
            self._producer = self._make()
            await self._producer.start()
        return await self._producer.send(topic, **kwargs)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


FETCH_MAX_WAIT_MS = 50
# How old a consumer's cluster metadata may get (aiokafka's default is 5 min). A topic deleted
# and re-created, or a broker restarted empty, changes the partitions under the group; the
# member learns it from the metadata and re-joins, so new partitions are read within this.
CONSUMER_METADATA_MAX_AGE_MS = 30_000


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """An unstarted group consumer with manual commits, reading from the earliest offset
    when the group has none."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.consumer_batch_max,
        # How long the broker may hold a fetch that found nothing. Kafka answers as soon as
        # data arrives, but the embedded broker answers at the end of the window, which put
        # half of the 500 ms default on every event's latency (docs/benchmarks.md).
        "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
        "metadata_max_age_ms": CONSUMER_METADATA_MAX_AGE_MS,
        "client_id": "ingester-consumer",
        "session_timeout_ms": settings.consumer_session_timeout_ms,
        "heartbeat_interval_ms": settings.consumer_heartbeat_interval_ms,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def send_all(producer: AIOKafkaProducer, topic_prefix: str, records: Iterable[Record]) -> int:
    """Send records to their streams' topics and wait until the broker acknowledged every one.

    For tools, tests and benchmarks that load a topic; the ingest service has its own
    publisher with timeouts and metrics. Returns how many records were sent.
    """
    futures = [
        await producer.send(
            topic_name(topic_prefix, r.stream), value=r.value, key=r.key, headers=list(r.headers)
        )
        for r in records
    ]
    await asyncio.gather(*futures)
    return len(futures)
