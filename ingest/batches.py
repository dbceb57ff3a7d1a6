"""Per-partition record batches shared by concurrent requests, one future per batch.

``AIOKafkaProducer.send`` costs a partitioner call, a size estimate and an asyncio future per
record, and the request then waits on all of those futures (a third of the server's CPU on
``/events``, docs/benchmarks.md). Here records are appended straight into one open batch per
topic-partition (``producer.create_batch()``), and every request whose records are in a
batch waits on that batch's single future.

When a batch is handed to the producer (``send_batch``): once its partition has nothing in
flight (aiokafka sends at most one batch per partition per produce request anyway) and the
oldest waiting batch is ``PRODUCE_LINGER_MS`` old, or one filled up. Then every partition
with a waiting batch goes in the same step, so they share one produce request. Under load
everything that arrived during one round trip goes in the next produce request at once; at
moderate rates a request waits at most the linger for company, which saves a produce request
(a write and a broker wake-up, a sixth of the CPU on RevenueCat) per record.

Order per key: a key always maps to one partition, a partition's batches are sent one at a
time in the order they were opened, and records enter a batch in the order ``append`` is
called, so records of one key reach Kafka in the order the requests published them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError

__all__ = ["Lanes", "PartitionBatch"]

log = logging.getLogger("ingest.publisher")


@dataclass(slots=True, eq=False)
class PartitionBatch:
    """Records bound for one topic-partition, acknowledged together."""

    builder: Any  # aiokafka BatchBuilder
    done: asyncio.Future[None]
    opened_at: float  # loop.time() of its first record
    size: int = 0  # bytes admitted through the budget (keys, values, headers)
    records: int = 0


@dataclass(slots=True, eq=False)
class _Lane:
    topic: str
    partition: int
    queue: deque[PartitionBatch] = field(default_factory=deque)  # open batch last
    in_flight: PartitionBatch | None = None


def _consume_outcome(future: asyncio.Future[None]) -> None:
    # A batch nobody waits for any more (its requests timed out) may fail later; reading its
    # exception keeps asyncio from logging "exception was never retrieved".
    if not future.cancelled():
        future.exception()


class Lanes:
    """The open and in-flight batches of every topic-partition of one producer.

    ``on_done(batch)`` is called once per batch when it is acknowledged or failed (the
    publisher releases the batch's bytes from its budget there).
    """

    def __init__(
        self, producer: Any, on_done: Callable[[PartitionBatch], None], *, linger_s: float = 0.0
    ) -> None:
        self._producer = producer
        self._linger_s = linger_s
        self._on_done = on_done
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._ready: dict[tuple[str, int], _Lane] = {}  # has a batch and nothing in flight
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pending = 0  # batches opened and not yet done
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._submit_loop(), name="batches")

    async def close(self) -> None:
        """Wait until every batch is done (the caller bounds this), then stop submitting."""
        try:
            await self._idle.wait()
        finally:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def append(
        self, topic: str, partition: int, key: bytes, value: bytes, headers: Any
    ) -> PartitionBatch:
        """Add one record to the open batch of ``topic``/``partition``; return that batch."""
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane(topic, partition)
        if lane.queue:
            batch = lane.queue[-1]
            added = batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
            if added is not None:
                batch.records += 1
                return batch
        batch = self._open(lane)
        # A fresh batch takes one record of any size (the publisher caps records at 1 MB).
        batch.builder.append(timestamp=None, key=key, value=value, headers=headers)
        batch.records += 1
        return batch

    def _open(self, lane: _Lane) -> PartitionBatch:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_consume_outcome)
        loop = asyncio.get_running_loop()
        batch = PartitionBatch(self._producer.create_batch(), done, loop.time())
        lane.queue.append(batch)
        self._pending += 1
        self._idle.clear()
        if lane.in_flight is None:
            self._ready[(lane.topic, lane.partition)] = lane
            self._wake.set()
        return batch

    async def _submit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._ready:
                continue
            # Batches younger than the linger wait for company, like Kafka's linger.ms,
            # unless one of them filled up. When one is due, every ready partition goes
            # with it, so that they share one produce request instead of one each.
            due = min(lane.queue[0].opened_at for lane in self._ready.values()) + self._linger_s
            full = any(len(lane.queue) > 1 for lane in self._ready.values())
            if due > loop.time() and not full:
                if timer is not None:
                    timer.cancel()
                timer = loop.call_at(due, self._wake.set)
                continue
            ready, self._ready = self._ready, {}
            for lane in ready.values():
                await self._submit(lane)

    async def _submit(self, lane: _Lane) -> None:
        batch = lane.queue.popleft()
        lane.in_flight = batch
        # Closed: no record joins a batch the producer may already be encoding, and the
        # producer does not linger on it.
        batch.builder.close()
        try:
            acked = await self._producer.send_batch(
                batch.builder, lane.topic, partition=lane.partition
            )
        except KafkaError as exc:
            self._finish(lane, batch, exc)
            return
        except Exception as exc:
            # Never let one batch stop the loop that submits every partition's batches.
            log.exception("could not hand a batch to the producer", extra={"topic": lane.topic})
            self._finish(lane, batch, KafkaError(f"batch not submitted: {exc!r}"))
            return
        acked.add_done_callback(lambda future: self._finish(lane, batch, _error_of(future)))

    def _finish(self, lane: _Lane, batch: PartitionBatch, error: BaseException | None) -> None:
        if not batch.done.done():
            if error is None:
                batch.done.set_result(None)
            else:
                batch.done.set_exception(error)
        lane.in_flight = None
        if lane.queue:
            self._ready[(lane.topic, lane.partition)] = lane
            self._wake.set()
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()
        self._on_done(batch)


def _error_of(future: asyncio.Future[Any]) -> BaseException | None:
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()
