"""Publishing a request's records to Kafka, answering only once every record is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from aiokafka.errors import KafkaError

from contract.records import Record
from core.kafka import make_producer
from core.settings import Settings
from core.topics import topic_name
from ingest.errors import PayloadTooLarge, PublishError, PublishTimeout

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

__all__ = ["MAX_RECORD_BYTES", "KafkaPublisher", "PublishError", "PublishTimeout", "Publisher"]

log = logging.getLogger("ingest.publisher")

# Kafka's default message.max.bytes and the producer's max_request_size are 1 MiB; a record
# over this could never be produced, so it is refused (413) before anything is sent instead
# of answering 503 and having the provider retry it forever.
MAX_RECORD_BYTES = 1_000_000
READY_CHECK_TIMEOUT_S = 1.0


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
    return len(record.key) + len(record.value) + sum(len(k) + len(v) for k, v in record.headers)


def _consume_outcome(future: asyncio.Future[object]) -> None:
    # A future abandoned after a timeout may fail later; reading its exception keeps asyncio
    # from logging "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class KafkaPublisher:
    """:class:`Publisher` on one long-lived aiokafka producer (``core.kafka``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.produce_timeout_s
        self._topics: dict[str, str] = {}
        self._producer: AIOKafkaProducer | None = None
        self._started = asyncio.Event()

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
        self._producer = producer
        self._started.set()

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
        self._started.clear()
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout_s)
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
        for record in records:
            if record_size(record) > MAX_RECORD_BYTES:
                raise PayloadTooLarge(
                    f"one event is {record_size(record)} bytes, over {MAX_RECORD_BYTES}"
                )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        futures: list[asyncio.Future[object]] = []
        try:
            async with asyncio.timeout_at(deadline):
                await self._started.wait()
                producer = self._producer
                if producer is None:
                    raise PublishError("the producer is closed")
                # send() only enqueues (the producer batches for linger_ms); all records of
                # the request are in flight together and acknowledged together.
                for record in records:
                    future = await producer.send(
                        self.topic(record.stream),
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                    )
                    future.add_done_callback(_consume_outcome)
                    futures.append(future)
        except TimeoutError:
            raise PublishTimeout(
                f"Kafka did not accept the records within {self._timeout} s"
            ) from None
        except KafkaError as exc:
            raise PublishError(f"Kafka refused the records: {type(exc).__name__}") from exc
        if not futures:
            return
        # asyncio.wait does not cancel what is still pending when it times out: those
        # records stay queued and may still be delivered (the retry is deduplicated).
        done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        if pending:
            raise PublishTimeout(
                f"Kafka acknowledged {len(done)} of {len(futures)} records within {self._timeout} s"
            )
        for future in done:
            error = future.exception()
            if error is not None:
                raise PublishError(f"Kafka refused a record: {type(error).__name__}") from error
