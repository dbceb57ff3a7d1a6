"""The offsets a runner committed, and the lag they leave (``consumer_lag``).

Offsets are committed only for partitions the consumer still holds; a commit the group
rejects after a rebalance is logged and dropped (the batch is in the database and the inbox,
and the partitions' new owner finds every record a duplicate). The lag is the highwater mark
(or, while paused, the partition end asked of the broker) minus the committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors
from prometheus_client import Gauge

from consumers import metrics
from consumers.liveness import Liveness

log = logging.getLogger("consumers.runner")


class Offsets:
    def __init__(
        self, consumer: Any, io_timeout_s: float, liveness: Liveness, lag: Gauge = metrics.LAG
    ) -> None:
        """``lag`` is the gauge (labelled topic, partition) the lag is reported in: another
        group reading the same topics (rc-sync) reports its own."""
        self.consumer = consumer
        self.io_timeout_s = io_timeout_s
        self.liveness = liveness
        self.lag = lag
        self._committed: dict[TopicPartition, int] = {}

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        assigned = self.consumer.assignment()
        owned = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
        mine = {tp: o for tp, o in owned.items() if tp in assigned}
        if len(mine) < len(owned):
            log.warning("partitions revoked mid-batch; their new owner redelivers them")
        if not mine:
            return
        try:
            await asyncio.wait_for(self.consumer.commit(mine), self.io_timeout_s)
        except kafka_errors.CommitFailedError as exc:
            # The group rebalanced: the batch is in the database and the inbox, and the new
            # owner of these partitions will find every record a duplicate.
            log.warning("offset commit rejected after a rebalance", extra={"error": str(exc)})
            return
        self._committed.update(mine)
        self.update_lag()

    async def refresh_lag(self) -> None:
        """While paused nothing is fetched, so the highwater marks stand still: ask the broker
        for the partition ends instead, so the lag gauge shows the backlog growing."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = await asyncio.wait_for(self.consumer.end_offsets(assigned), self.io_timeout_s)
        except (TimeoutError, kafka_errors.KafkaError) as exc:
            log.debug("lag refresh failed", extra={"error": str(exc)})
            return
        for tp, end in ends.items():
            committed = self._committed.get(tp)
            if committed is not None:
                self.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - committed))

    def update_lag(self) -> None:
        total = 0
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            committed = self._committed.get(tp)
            if highwater is None or committed is None:
                continue
            lag = max(0, highwater - committed)
            self.lag.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.liveness.lag = total
