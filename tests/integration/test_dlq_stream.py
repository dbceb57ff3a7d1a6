"""``dlq list`` and ``dlq replay`` stream the DLQ: on 100,000 dead letters ``--limit 10``
fetches one bounded chunk, never the whole topic (real broker)."""

from __future__ import annotations

import asyncio

import pytest

from consumers import dlq
from consumers.operations import DlqPass
from consumers.topic_reader import CHUNK_RECORDS
from contract.topics import DLQ, topic_name
from core.kafka import make_producer
from core.settings import Settings
from ingester.dlq import dlq_list, dlq_replay
from tests.conftest import SessionStack, make_settings

DEAD_LETTERS = 100_000


@pytest.fixture
def broker_settings(stack: SessionStack, topic_prefix: str) -> Settings:
    return make_settings(None, stack.bootstrap, topic_prefix)


def _headers(n: int, source_topic: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_id", f"dead-{n}".encode()),
        ("ce_source", b"kit"),
        (dlq.SOURCE_TOPIC, source_topic.encode()),
        (dlq.SOURCE_PARTITION, b"0"),
        (dlq.SOURCE_OFFSET, str(n).encode()),
        (dlq.ERROR_CLASS, b"DecodeError"),
        (dlq.ERROR, b"value is not JSON"),
    ]


async def _fill_dlq(settings: Settings, count: int) -> None:
    """Publish ``count`` small dead letters in large producer batches, spread over the
    partitions batch by batch."""
    topic = topic_name(settings.topic_prefix, DLQ)
    source_topic = topic_name(settings.topic_prefix, "kit")
    producer = make_producer(settings, max_batch_size=512 * 1024, linger_ms=0)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        futures: list[asyncio.Future[object]] = []
        n = 0
        while n < count:
            batch = producer.create_batch()
            while n < count:
                appended = batch.append(
                    key=b"k", value=b"x", timestamp=None, headers=_headers(n, source_topic)
                )
                if appended is None:
                    break
                n += 1
            partition = partitions[len(futures) % len(partitions)]
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def test_dlq_list_limit_reads_one_chunk_of_a_large_dlq(
    broker_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fill_dlq(broker_settings, DEAD_LETTERS)

    listed = DlqPass()
    assert await dlq_list(broker_settings, limit=10, done=listed) == 0

    lines = capsys.readouterr().out.splitlines()
    assert listed.shown == 10
    assert 10 <= listed.read <= CHUNK_RECORDS < DEAD_LETTERS
    assert lines[0].startswith("dlq_offset\t")
    assert [line.split("\t")[0] for line in lines[1:11]] == [f"0:{i}" for i in range(10)]
    assert all("DecodeError" in line for line in lines[1:11])
    assert lines[11].startswith("first 10 dead letter(s)")

    replayed = DlqPass()
    assert await dlq_replay(broker_settings, dry_run=True, limit=25, done=replayed) == 0

    out = capsys.readouterr().out.splitlines()
    assert replayed.shown == 25 and replayed.refused == 0
    assert replayed.read <= CHUNK_RECORDS
    assert len([line for line in out if line.startswith("would replay 0:")]) == 25
