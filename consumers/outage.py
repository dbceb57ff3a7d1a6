"""Riding out an outage: pause fetching, retry the same step with backoff, resume.

While the database or the broker is unavailable nothing may be committed and nothing
dead-lettered; the batch in hand is retried until the step succeeds. Fetching is paused
meanwhile, but the consumer is still polled so the group keeps this member (aiokafka leaves
the group when ``getmany`` is not called within ``max_poll_interval_ms``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import errors as kafka_errors

from consumers import metrics
from consumers.backoff import Backoff
from consumers.classify import Failure, classify

log = logging.getLogger("consumers.outage")

T = TypeVar("T")


async def _nothing() -> None:
    return None


class Outages:
    """``on_attempt`` is called after every failed attempt (the loop is alive, only blocked);
    ``quiesce`` is awaited before the consumer is polled, so no other fetch is in flight;
    ``on_idle`` each time a paused wait begins (e.g. to keep the lag gauge moving)."""

    def __init__(
        self,
        consumer: Any,
        backoff: Backoff,
        *,
        io_timeout_s: float = 10.0,
        on_attempt: Callable[[], None] = lambda: None,
        quiesce: Callable[[], Awaitable[None]] = _nothing,
        on_idle: Callable[[], Awaitable[None]] = _nothing,
    ) -> None:
        self._consumer = consumer
        self._backoff = backoff
        self._io_timeout_s = io_timeout_s
        self._on_attempt = on_attempt
        self._quiesce = quiesce
        self._on_idle = on_idle
        self.paused = False

    async def retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run ``step`` until it succeeds; retryable failures pause fetching meanwhile.
        Poison and fatal failures propagate."""
        attempt = 0
        while True:
            try:
                result = await step()
            except Exception as exc:
                if classify(exc) is not Failure.RETRYABLE:
                    raise
                if not self.paused:
                    await self.pause()
                    log.warning(
                        "outage: fetching paused",
                        extra={"step": what, "error": f"{type(exc).__name__}: {exc}"},
                    )
                delay = self._backoff.delay(attempt)
                log.warning(
                    f"{what} failed; retrying",
                    extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": delay},
                )
                attempt += 1
                self._on_attempt()
                await self.idle(delay)
                continue
            if self.paused:
                self._resume()
            return result

    async def pause(self) -> None:
        await self._quiesce()
        self._consumer.pause(*self._consumer.assignment())
        self.paused = True
        metrics.PAUSED.set(1)
        metrics.PAUSES.inc()

    def _resume(self) -> None:
        self._consumer.resume(*self._consumer.assignment())
        self.paused = False
        metrics.PAUSED.set(0)
        log.info("resumed")

    async def idle(self, seconds: float) -> None:
        """Wait while paused, polling the consumer. Partitions assigned meanwhile (a
        rebalance) are paused too and rewound to the first record they returned."""
        await self._quiesce()
        await self._on_idle()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._consumer.pause(*self._consumer.assignment())
            poll_s = min(left, 0.5)
            try:
                async with asyncio.timeout(poll_s + self._io_timeout_s):
                    returned = await self._consumer.getmany(timeout_ms=int(poll_s * 1000))
            except (kafka_errors.KafkaError, TimeoutError):
                await asyncio.sleep(poll_s)  # the broker is what is down
                continue
            for tp, records in returned.items():
                if records:
                    self._consumer.seek(tp, min(r.offset for r in records))
