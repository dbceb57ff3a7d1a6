"""How far a consumer group is behind on each partition of its topics, read from the outside
(the operator console): the partition's end, the group's committed offset, their difference.

The group's offsets are read through a client that names the group but never joins it (its
partitions are assigned by hand) and never commits. Ends are learnt as the DLQ tools learn
them (:func:`consumers.topic_reader.partition_ends`), from a client without a group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from consumers.topic_reader import partition_ends
from core.kafka import make_consumer
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    end: int
    committed: int | None  # None: the group has committed nothing here yet

    @property
    def lag(self) -> int:
        return max(0, self.end - (self.committed or 0))


async def group_lag(
    settings: Settings, group: str, topics: Sequence[str], timeout_s: float = 10.0
) -> list[PartitionLag]:
    """Every partition of ``topics`` (those that exist) with ``group``'s position in it."""
    reader = make_consumer(settings, group_id=None, client_id="ingester-console")
    offsets = make_consumer(
        settings, group_id=group, client_id="ingester-console", enable_auto_commit=False
    )
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(reader.start(), offsets.start())
            await reader._client.force_metadata_update()
            tps = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(reader.partitions_for_topic(topic) or ())
            ]
            if not tps:
                return []
            reader.assign(tps)
            offsets.assign(tps)
            # Fetch from the listed ends: the fetches that learn the high watermarks then
            # bring back at most the last batch, not the topic.
            for tp, end in (await reader.end_offsets(tps)).items():
                reader.seek(tp, max(0, end - 1))
            ends, _ = await partition_ends(reader, tps, timeout_s)
            committed = [await offsets.committed(tp) for tp in tps]
    finally:
        await asyncio.gather(reader.stop(), offsets.stop())
    return [
        PartitionLag(tp.topic, tp.partition, ends[tp], c)
        for tp, c in zip(tps, committed, strict=True)
    ]


async def broker_ready(settings: Settings, timeout_s: float = 2.0) -> bool:
    """Whether the brokers answer a metadata request within ``timeout_s``."""
    client = make_consumer(settings, group_id=None, client_id="ingester-console")
    try:
        async with asyncio.timeout(timeout_s):
            await client.start()
            await client.topics()
    except (OSError, TimeoutError, kafka_errors.KafkaError):
        return False
    finally:
        await client.stop()
    return True
