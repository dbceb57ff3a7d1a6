"""Kafka client factories: every producer and consumer of the project is built here."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.settings import Settings


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An unstarted producer with ``acks=all`` and a small linger so concurrent requests
    share batches. Idempotence follows ``KAFKA_IDEMPOTENT_PRODUCER`` (the embedded broker
    rejects InitProducerId, so dev and tests turn it off)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "acks": "all",
        "enable_idempotence": settings.kafka_idempotent_producer,
        "linger_ms": 5,
        # One /events request (500 items) is larger than the 16 KiB default batch; with
        # small batches its records queue behind each other (docs/benchmarks.md).
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": max(1000, int(settings.produce_timeout_s * 1000)),
        "client_id": "ingester",
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """An unstarted group consumer with manual commits, reading from the earliest offset
    when the group has none."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_kafka(),
        "group_id": settings.consumer_group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.consumer_batch_max,
        "client_id": "ingester-consumer",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
