"""Stream a topic from each partition's current position up to the end it had when reading
began (for the DLQ tools: they show or replay what is there, then stop).

Records are pulled in chunks of at most ``chunk``, one partition at a time, so memory stays
bounded however large the topic is, and a caller that stops early (``--limit``) stops
fetching too: :attr:`TopicReader.records_read` says how many records it pulled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
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


async def partition_ends(
    consumer: Any, tps: Sequence[TopicPartition], timeout_s: float = 30.0
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, list[Any]]]:
    """Every partition's end, and the few records the fetches that learnt it returned (at
    most one per round, from each partition's position).

    The end is the larger of ListOffsets' answer and the high watermark of a fetch: some
    Kafka-compatible brokers (the embedded one) answer ListOffsets with the base offset of
    the last batch plus one, which undercounts multi-record batches."""
    listed: dict[TopicPartition, int] = await consumer.end_offsets(list(tps))
    early: dict[TopicPartition, list[Any]] = {}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no fetch answer from {tps[0].topic}")
        batch = await consumer.getmany(*tps, timeout_ms=FETCH_WAIT_MS, max_records=1)
        for tp, records in batch.items():
            early.setdefault(tp, []).extend(records)
    ends = {tp: max(listed.get(tp, 0), consumer.highwater(tp)) for tp in tps}
    return ends, early


class TopicReader:
    """Records of ``tps`` in (partition, offset) order, from each partition's position up to
    its end as of the start of reading (:func:`partition_ends`, taken for every partition
    before any is read), or up to the ``ends`` given.

    Records appended while reading (a replay that fails again) are left for the next run.
    ``timeout_s`` bounds the wait for a fetch that brings nothing while records remain.
    """

    def __init__(
        self,
        consumer: Any,
        tps: Sequence[TopicPartition],
        *,
        chunk: int = CHUNK_RECORDS,
        timeout_s: float = 30.0,
        ends: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        self._consumer = consumer
        self._tps = list(tps)
        self._chunk = chunk
        self._timeout_s = timeout_s
        self._ends = ends
        self.records_read = 0

    async def chunks(self) -> AsyncGenerator[list[RawRecord], None]:
        """Chunks of at most ``chunk`` records; stop iterating to stop fetching."""
        early: dict[TopicPartition, list[Any]] = {}
        if self._ends is None:
            ends, early = await partition_ends(self._consumer, self._tps, self._timeout_s)
        else:
            ends = dict(self._ends)
        for tp in self._tps:
            async for chunk in self._partition(tp, ends[tp], early.get(tp, [])):
                yield chunk

    async def _partition(
        self, tp: TopicPartition, end: int, early: list[Any]
    ) -> AsyncGenerator[list[RawRecord], None]:
        consumer = self._consumer
        consumer.pause(*(other for other in self._tps if other != tp))
        consumer.resume(tp)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        fetched = early
        while True:
            records = [RawRecord.of(r) for r in fetched if r.offset < end]
            if records:
                self.records_read += len(records)
                idle_since = loop.time()
                yield records
            if await consumer.position(tp) >= end:
                return
            if loop.time() - idle_since > self._timeout_s:
                raise TimeoutError(
                    f"reading {tp.topic} partition {tp.partition}: nothing fetched for"
                    f" {self._timeout_s:.0f} s"
                )
            batch = await consumer.getmany(tp, timeout_ms=FETCH_WAIT_MS, max_records=self._chunk)
            fetched = batch.get(tp, [])
