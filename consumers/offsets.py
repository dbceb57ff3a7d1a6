"""The offsets a runner committed, and the lag they leave (``consumer_lag``).

Offsets are committed only for partitions the consumer still holds; a commit the group
rejects after a rebalance is logged and dropped (the batch is in the database and the inbox,
and the partitions' new owner finds every record a duplicate). The lag is the highwater mark
(or, while paused, the partition end asked of the broker) minus the committed offset.

A commit can also name partitions that no longer exist: the broker restarted empty (a dev
broker) or someone deleted and re-created a topic with fewer partitions, while this member's
metadata, and so its assignment, still has the old ones. The broker answers such a commit
with UNKNOWN_TOPIC_OR_PARTITION, which aiokafka retries until the commit's timeout, and
retrying it as an outage would hold every source for as long as the metadata stays old
(minutes). So a failed commit refreshes the metadata first: offsets of partitions it no
longer lists are dropped with a warning (their records are in the database and the inbox;
should they ever be read again they are duplicates), the rest is committed, and the changed
partition count makes the group re-join with the partitions that exist. A commit that fails
while every partition still exists is an outage as before.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        except (TimeoutError, kafka_errors.KafkaError):
            gone = await self._gone(mine)
            if not gone:
                raise  # every partition exists: an outage, retried by the caller
            log.warning(
                "offsets of partitions that no longer exist dropped; the group re-joins",
                extra={"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in gone)},
            )
            await self.commit(
                {(tp.topic, tp.partition): o for tp, o in mine.items() if tp not in gone}
            )
            return
        self._committed.update(mine)
        self.update_lag()

    async def _gone(self, offsets: Mapping[TopicPartition, int]) -> set[TopicPartition]:
        """The partitions of ``offsets`` that fresh metadata no longer lists (none when the
        metadata cannot be had: then nothing is known to be gone)."""
        try:
            updated = await asyncio.wait_for(
                self.consumer._client.force_metadata_update(), self.io_timeout_s
            )
        except (TimeoutError, kafka_errors.KafkaError):
            return set()
        if not updated:
            return set()
        gone = set()
        for tp in offsets:
            partitions = self.consumer.partitions_for_topic(tp.topic)
            if not partitions or tp.partition not in partitions:
                gone.add(tp)
        for tp in gone:
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                metrics.LAG.remove(tp.topic, str(tp.partition))
        return gone

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
