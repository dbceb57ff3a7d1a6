"""Read a topic from a start position up to the end it had when reading began (for the DLQ
tools: they show or replay what is there, then stop)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from consumers.decode import RawRecord


async def assign_all(consumer: Any, topic: str, timeout_s: float = 10.0) -> list[TopicPartition]:
    """Assign every partition of ``topic`` to a started consumer."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if loop.time() > deadline:
            raise LookupError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await asyncio.sleep(0.1)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return tps


async def read_to_end(
    consumer: Any, tps: list[TopicPartition], timeout_s: float = 30.0
) -> list[RawRecord]:
    """Records from each partition's current position up to its end as of the start, in
    (partition, offset) order.

    The end of a partition is the larger of ListOffsets' answer and the high watermark of
    the first fetch: some Kafka-compatible brokers (the embedded one) answer ListOffsets with
    the base offset of the last batch plus one, which undercounts multi-record batches.
    Records appended while reading (a replay that fails again) are left for the next run.
    """
    listed: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    ends: dict[TopicPartition, int] = {}
    found: list[RawRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        batch = await consumer.getmany(*tps, timeout_ms=200)
        for tp in tps:
            highwater = consumer.highwater(tp)
            if tp not in ends and highwater is not None:
                ends[tp] = max(listed.get(tp, 0), highwater)
        for records in batch.values():
            found.extend(RawRecord.of(r) for r in records)
        if len(ends) == len(tps) and all(
            [await consumer.position(tp) >= end for tp, end in ends.items()]
        ):
            break
        if loop.time() > deadline:
            raise TimeoutError(f"reading {tps[0].topic} took over {timeout_s}s")
    by_partition = {tp.partition: ends[tp] for tp in tps}
    kept = [r for r in found if r.offset < by_partition[r.partition]]
    return sorted(kept, key=lambda r: (r.partition, r.offset))
