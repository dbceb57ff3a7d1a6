"""Publishing a request's records to Kafka, answering only once every record is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from itertools import chain
from typing import TYPE_CHECKING, Protocol

from aiokafka.errors import KafkaError

from contract.records import Record
from contract.topics import topic_name
from core.kafka import make_producer
from core.settings import Settings
from ingest.batches import Lanes, PartitionBatch
from ingest.budget import ByteBudget
from ingest.errors import PayloadTooLarge, PublishError, PublishTimeout
from ingest.partitioning import partition_for

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

__all__ = ["MAX_RECORD_BYTES", "KafkaPublisher", "PublishError", "PublishTimeout", "Publisher"]

log = logging.getLogger("ingest.publisher")

# Kafka's default message.max.bytes and the producer's max_request_size are 1 MiB; a record
# over this could never be produced, so it is refused (413) before anything is sent instead
# of answering 503 and having the provider retry it forever.
MAX_RECORD_BYTES = 1_000_000
READY_CHECK_TIMEOUT_S = 1.0

Partitions = dict[str, tuple[str, list[int]]]  # stream -> (topic, partitions ascending)


class Publisher(Protocol):
    """Where the HTTP layer hands its records."""

    async def publish(self, records: Sequence[Record]) -> None:
        """Return once the broker acknowledged every record (``acks=all``).

        Raises :class:`PublishTimeout` when that takes longer than ``PRODUCE_TIMEOUT_S``,
        :class:`PublishError` when the broker refused a record, and
        :class:`ingest.errors.PayloadTooLarge` (before sending anything) for a record that
        could never be produced. After a timeout some records may still be delivered later;
        the provider's retry then duplicates them and consumers deduplicate by ``ce_id``.
        """
        ...

    async def ready(self) -> bool:
        """True while a connection to the cluster is up."""
        ...


def record_size(record: Record) -> int:
    """Bytes of key, value and headers (names and values), summed in C."""
    return len(record.key) + len(record.value) + sum(map(len, chain.from_iterable(record.headers)))


class KafkaPublisher:
    """:class:`Publisher` on one long-lived aiokafka producer (``core.kafka``).

    Records go into per-partition batches shared by concurrent requests
    (:mod:`ingest.batches`), on the partition the default partitioner would choose
    (:mod:`ingest.partitioning`), after a first-come, first-served wait for room under
    ``PRODUCE_BUFFER_BYTES`` (:mod:`ingest.budget`).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.produce_timeout_s
        self._topics: dict[str, str] = {}
        self._sorted: dict[str, tuple[object, list[int]]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._lanes: Lanes | None = None
        self._budget = ByteBudget(settings.produce_buffer_bytes)
        self._started = asyncio.Event()

    @property
    def budget(self) -> ByteBudget:
        """The byte budget of records buffered towards Kafka (``PRODUCE_BUFFER_BYTES``)."""
        return self._budget

    def topic(self, stream: str) -> str:
        name = self._topics.get(stream)
        if name is None:
            name = self._topics[stream] = topic_name(self._settings.topic_prefix, stream)
        return name

    async def start(self) -> None:
        """Connect once; raises the broker error when the cluster cannot be reached."""
        producer = make_producer(self._settings)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._lanes = Lanes(
            producer, self._batch_done, linger_s=self._settings.produce_linger_ms / 1000
        )
        self._lanes.start()
        self._producer = producer
        self._started.set()

    def _batch_done(self, batch: PartitionBatch) -> None:
        self._budget.release(batch.size)

    async def connect(self, *, max_backoff_s: float = 1.0) -> None:
        """Retry :meth:`start` until it succeeds (or the task is cancelled), so the service
        comes up and reports not-ready while Kafka is away instead of crash-looping."""
        backoff = 0.2
        while not self._started.is_set():
            try:
                await self.start()
            except (KafkaError, OSError) as exc:
                log.warning(
                    "kafka not reachable, retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff_s)
        log.info("kafka producer connected")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is buffered and close; bounded so a dead broker cannot hang shutdown."""
        producer, self._producer = self._producer, None
        lanes, self._lanes = self._lanes, None
        self._started.clear()
        if producer is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                if lanes is not None:
                    await lanes.close()
                await producer.stop()
        except TimeoutError:
            log.error("kafka producer did not flush within %.1f s", timeout_s)

    async def ready(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        client = producer.client
        for broker in client.cluster.brokers():
            with contextlib.suppress(TimeoutError, KafkaError, OSError):
                if await asyncio.wait_for(client.ready(broker.nodeId), READY_CHECK_TIMEOUT_S):
                    return True
        return False

    async def publish(self, records: Sequence[Record]) -> None:
        sizes = [record_size(record) for record in records]
        for size in sizes:
            if size > MAX_RECORD_BYTES:
                raise PayloadTooLarge(f"one event is {size} bytes, over {MAX_RECORD_BYTES}")
        if not records:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        total = sum(sizes)
        try:
            partitions = self._known_partitions(records)
            if partitions is not None and self._budget.try_acquire(total):
                # The usual case, without a suspension: connected, topics known, room left.
                waiting = self._append(records, sizes, partitions)
            else:
                async with asyncio.timeout_at(deadline):
                    await self._started.wait()
                    partitions = await self._partitions(records)
                    # First come, first served: a request waits here while the bytes
                    # buffered towards Kafka are over PRODUCE_BUFFER_BYTES, never inside
                    # the producer.
                    await self._budget.acquire(total)
                    waiting = self._append(records, sizes, partitions)
        except TimeoutError:
            raise PublishTimeout(
                f"Kafka did not accept the records within {self._timeout} s"
            ) from None
        except KafkaError as exc:
            raise PublishError(f"Kafka refused the records: {type(exc).__name__}") from exc
        await self._acknowledged(waiting, deadline)

    async def _acknowledged(self, batches: set[asyncio.Future[None]], deadline: float) -> None:
        """Wait until every batch is acknowledged, or fail at the first refusal or at the
        deadline. One future and one timer per request (``asyncio.wait`` costs a few percent
        of a one-record request more). The batches are shared and never cancelled here: on a
        timeout their records stay queued and may still be delivered (the retry is
        deduplicated)."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[None] = loop.create_future()
        left = len(batches)

        def batch_done(batch: asyncio.Future[None]) -> None:
            nonlocal left
            if outcome.done():
                return
            error = None if batch.cancelled() else batch.exception()
            if batch.cancelled() or error is not None:
                name = "cancelled" if error is None else type(error).__name__
                refused = PublishError(f"Kafka refused a record: {name}")
                refused.__cause__ = error
                outcome.set_exception(refused)
                return
            left -= 1
            if left == 0:
                outcome.set_result(None)

        def expired() -> None:
            if not outcome.done():
                acked = len(batches) - left
                outcome.set_exception(
                    PublishTimeout(
                        f"Kafka acknowledged {acked} of {len(batches)} batches "
                        f"within {self._timeout} s"
                    )
                )

        for batch in batches:
            batch.add_done_callback(batch_done)
        timer = loop.call_at(deadline, expired)
        try:
            await outcome
        finally:
            timer.cancel()

    def _known_partitions(self, records: Sequence[Record]) -> Partitions | None:
        """stream -> (topic, its partitions in ascending order) from the metadata the producer
        already holds; None when the producer is not up or a topic is not known yet."""
        producer = self._producer
        if producer is None or not self._started.is_set():
            return None
        cluster = producer.client.cluster
        found: Partitions = {}
        for record in records:
            stream = record.stream
            if stream in found:
                continue
            topic = self.topic(stream)
            known = cluster.partitions_for_topic(topic)
            if not known:
                return None
            cached = self._sorted.get(topic)
            if cached is None or cached[0] is not known:
                # The metadata replaces the set when partitions change; sort once per set.
                cached = self._sorted[topic] = (known, sorted(known))
            found[stream] = (topic, cached[1])
        return found

    async def _partitions(self, records: Sequence[Record]) -> Partitions:
        """:meth:`_known_partitions`, waiting for the metadata of topics not known yet."""
        producer = self._producer
        if producer is None:
            raise PublishError("the producer is closed")
        for stream in {record.stream for record in records}:
            topic = self.topic(stream)
            if not producer.client.cluster.partitions_for_topic(topic):
                await producer.partitions_for(topic)
        found = self._known_partitions(records)
        if found is None:
            raise PublishError("the producer is closed")
        return found

    def _append(
        self,
        records: Sequence[Record],
        sizes: Sequence[int],
        partitions: Partitions,
    ) -> set[asyncio.Future[None]]:
        """Every record into its partition's open batch; the futures of those batches."""
        lanes = self._lanes
        if lanes is None:
            self._budget.release(sum(sizes))
            raise PublishError("the producer is closed")
        waiting: set[asyncio.Future[None]] = set()
        for record, size in zip(records, sizes, strict=True):
            topic, numbers = partitions[record.stream]
            batch = lanes.append(
                topic,
                partition_for(record.key, numbers),
                record.key,
                record.value,
                list(record.headers),
            )
            batch.size += size
            waiting.add(batch.done)
        return waiting
