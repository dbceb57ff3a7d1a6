"""The embedded broker behaves as the project needs: topics, acks=all, headers, groups."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from contract.records import cloudevent
from contract.topics import all_topics, topic_name
from core.settings import Settings
from core.topics import create_topics
from tests.support import publish


async def test_topics_create_is_idempotent(settings: Settings) -> None:
    again = await create_topics(settings)

    assert again.created == ()
    assert set(again.existing) == set(all_topics(settings.topic_prefix))


async def test_produced_record_comes_back_through_a_consumer_group(settings: Settings) -> None:
    record = cloudevent(
        source="kit",
        event_id="evt-1",
        event_type="kit.subscriber.activated",
        time="2026-01-02T03:04:05.000Z",
        partition_key="jane@example.com",
        value=b'{"id": "evt-1"}',
        received_at="2026-01-02T03:04:06.000Z",
    )
    await publish(settings.require_kafka(), settings.topic_prefix, [record])

    consumer = AIOKafkaConsumer(
        topic_name(settings.topic_prefix, "kit"),
        bootstrap_servers=settings.require_kafka(),
        group_id=f"{settings.consumer_group}-roundtrip",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        message = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(message.topic, message.partition))
    finally:
        await consumer.stop()

    assert message.key == b"jane@example.com"
    assert message.value == b'{"id": "evt-1"}'
    assert dict(message.headers)["ce_id"] == b"evt-1"
    assert dict(message.headers)["ce_source"] == b"kit"
    assert committed == message.offset + 1
