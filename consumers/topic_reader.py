"""Stream a topic from each partition's current position up to the end it had when reading
began (for the DLQ tools: they show or replay what is there, then stop).

Records are pulled in chunks of at most ``chunk``, one partition at a time, so memory stays
bounded however large the topic is, and a caller that stops early (``--limit``) stops
fetching too: :attr:`TopicReader.records_read` says how many records it pulled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from aiokafka import TopicPartition

from consumers.decode import RawRecord

CHUNK_RECORDS = 500
FETCH_WAIT_MS = 200


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


class TopicReader:
    """Records of ``tps`` in (partition, offset) order, from each partition's position up to
    its end as of the first fetch.

    The end of a partition is the larger of ListOffsets' answer and the high watermark of
    the first fetch: some Kafka-compatible brokers (the embedded one) answer ListOffsets with
    the base offset of the last batch plus one, which undercounts multi-record batches.
    Records appended while reading (a replay that fails again) are left for the next run.
    ``idle_timeout_s`` bounds the wait for a fetch that brings nothing while records remain.
    """

    def __init__(
        self,
        consumer: Any,
        tps: Sequence[TopicPartition],
        *,
        chunk: int = CHUNK_RECORDS,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self._consumer = consumer
        self._tps = list(tps)
        self._chunk = chunk
        self._idle_timeout_s = idle_timeout_s
        self.records_read = 0

    async def chunks(self) -> AsyncGenerator[list[RawRecord], None]:
        """Chunks of at most ``chunk`` records; stop iterating to stop fetching."""
        listed: dict[TopicPartition, int] = await self._consumer.end_offsets(self._tps)
        for tp in self._tps:
            async for chunk in self._partition(tp, listed.get(tp, 0)):
                yield chunk

    async def _partition(
        self, tp: TopicPartition, listed: int
    ) -> AsyncGenerator[list[RawRecord], None]:
        consumer = self._consumer
        consumer.pause(*(other for other in self._tps if other != tp))
        consumer.resume(tp)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        end: int | None = None
        while True:
            batch = await consumer.getmany(tp, timeout_ms=FETCH_WAIT_MS, max_records=self._chunk)
            highwater = consumer.highwater(tp)
            if end is None and highwater is not None:
                end = max(listed, highwater)
            limit = end if end is not None else listed
            records = [RawRecord.of(r) for r in batch.get(tp, ()) if r.offset < limit]
            if records:
                self.records_read += len(records)
                idle_since = loop.time()
                yield records
            if end is not None and await consumer.position(tp) >= end:
                return
            if loop.time() - idle_since > self._idle_timeout_s:
                raise TimeoutError(
                    f"reading {tp.topic} partition {tp.partition}: nothing fetched for"
                    f" {self._idle_timeout_s:.0f} s"
                )
