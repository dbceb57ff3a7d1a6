"""The ingest publisher against the real broker: partitions, acknowledgements, timeouts,
order per key and compression."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaProducer

from contract.records import Record, cloudevent
from contract.topics import topic_name
from core.devstack import TansuBroker
from core.kafka import make_producer
from core.settings import Settings
from core.topics import create_topics
from ingest.publisher import PublishTimeout
from tests.conftest import make_settings
from tests.integration import ingest_harness as h
from tests.support import read_records


def record(key: str, serial: int, stream_source: str = "kit") -> Record:
    return cloudevent(
        source=stream_source,
        event_id=f"{key}-{serial}",
        event_type="kit.test",
        time="2024-06-01T00:00:00.000Z",
        partition_key=key,
        value=f'{{"serial": {serial}}}'.encode(),
        received_at="2024-06-01T00:00:01.000Z",
    )


KEYS = [f"user-{i}@example.com" for i in range(40)] + [str(uuid.uuid4()) for _ in range(40)]


async def test_keys_land_on_the_partitions_send_would_choose(settings: Settings) -> None:
    records = [record(key, 0) for key in KEYS]
    async with h.kafka_publisher(settings) as publisher:
        await publisher.publish(records)
    # The same keys through the producer's own partitioner, on a second topic.
    other = settings.with_overrides(topic_prefix=f"{settings.topic_prefix}send.")
    await create_topics(other)
    producer: AIOKafkaProducer = make_producer(other)
    await producer.start()
    try:
        topic = topic_name(other.topic_prefix, "kit")
        futures = [await producer.send(topic, value=r.value, key=r.key) for r in records]
        expected = {r.key: (await f).partition for r, f in zip(records, futures, strict=True)}
    finally:
        await producer.stop()

    found = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "kit"), len(records)
    )

    assert {r.key: r.partition for r in found} == expected
    assert len(set(expected.values())) > 1  # the keys really spread over the partitions


async def test_every_record_is_acknowledged_when_publish_returns(settings: Settings) -> None:
    records = [record(key, 0) for key in KEYS] + [record(KEYS[0], 1, "app")]
    async with h.kafka_publisher(settings) as publisher:
        await publisher.publish(records)
        # No waiting: acknowledged records are readable at once.
        kit = await read_records(
            settings.require_kafka(), topic_name(settings.topic_prefix, "kit"), len(KEYS), 5
        )
        app = await read_records(
            settings.require_kafka(), topic_name(settings.topic_prefix, "experiments"), 1, 5
        )

    assert sorted(r.key for r in kit) == sorted(k.encode() for k in KEYS)
    assert [h.headers_of(r)["ce_id"] for r in app] == [f"{KEYS[0]}-1"]


async def test_concurrent_requests_keep_the_order_of_each_key(settings: Settings) -> None:
    keys = KEYS[:6]
    requests = [[record(key, serial) for key in keys] for serial in range(30)]
    # A budget of two requests' bytes: most requests wait their turn before they append.
    size = sum(len(r.key) + len(r.value) + 200 for r in requests[0])
    settings = settings.with_overrides(produce_buffer_bytes=2 * size)
    async with h.kafka_publisher(settings) as publisher:
        await asyncio.gather(*(publisher.publish(batch) for batch in requests))

    found = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "kit"), 30 * len(keys)
    )
    serials: dict[bytes, list[int]] = defaultdict(list)
    for r in found:  # ordered by (partition, offset)
        serials[r.key].append(int(h.headers_of(r)["ce_id"].rsplit("-", 1)[1]))

    assert {key: serials[key.encode()] for key in keys} == {key: list(range(30)) for key in keys}


@pytest.mark.slow
async def test_a_broker_that_stopped_answering_times_out(private_broker: TansuBroker) -> None:
    settings = make_settings(None, private_broker.bootstrap, f"pt{uuid.uuid4().hex[:6]}.")
    settings = settings.with_overrides(produce_timeout_s=1.0)
    await create_topics(settings)
    async with h.kafka_publisher(settings) as publisher:
        await publisher.publish([record("before", 0)])
        await private_broker.stop()

        with pytest.raises(PublishTimeout):
            await publisher.publish([record(key, 1) for key in KEYS[:10]])


@pytest.mark.parametrize("compression", ["none", "gzip", "lz4", "zstd"])
async def test_every_compression_round_trips(settings: Settings, compression: str) -> None:
    settings = settings.with_overrides(kafka_compression=compression)
    records = [record(key, 7) for key in KEYS[:20]]
    async with h.kafka_publisher(settings) as publisher:
        await publisher.publish(records)

    found = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "kit"), len(records)
    )

    assert sorted(r.value for r in found) == sorted(r.value for r in records)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        pytest.param("none", None, id="none"),
        pytest.param("gzip", "gzip", id="gzip"),
        pytest.param("lz4", "lz4", id="lz4"),
        pytest.param("zstd", "zstd", id="zstd"),
    ],
)
async def test_the_producer_compresses_as_configured(
    settings: Settings, setting: str, expected: str | None
) -> None:
    producer = make_producer(settings.with_overrides(kafka_compression=setting))
    try:
        assert producer._compression_type == expected
    finally:
        await producer.stop()
