"""Committing a batch's offsets when some of its partitions no longer exist (the broker
restarted empty, or a topic was re-created with fewer partitions): the decision, driven by a
hand-made consumer. The real broker runs it in tests/integration/test_consumers_vanished.py."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as kafka_errors

from consumers.liveness import Liveness
from consumers.offsets import Offsets


class Consumer:
    """As much of aiokafka's consumer as :class:`Offsets` uses. ``exists`` is the cluster as
    a fresh metadata request shows it; a commit naming anything else fails as the broker's
    UNKNOWN_TOPIC_OR_PARTITION does (aiokafka retries it until the caller's timeout)."""

    def __init__(self, assigned: set[TopicPartition], exists: dict[str, set[int]]) -> None:
        self.assigned = assigned
        self.exists = exists
        self.metadata_answers = True
        self.committed: dict[TopicPartition, int] = {}
        self._client = self

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.assigned)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if any(tp.partition not in self.exists.get(tp.topic, set()) for tp in offsets):
            await asyncio.sleep(3600)
        self.committed.update(offsets)

    async def force_metadata_update(self) -> bool:
        return self.metadata_answers

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.exists.get(topic)

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


BATCH = {("kit", 0): 5, ("kit", 2): 7, ("app", 1): 3}
ASSIGNED = {tp("kit", 0), tp("kit", 1), tp("kit", 2), tp("app", 0), tp("app", 1)}


@pytest.mark.parametrize(
    ("exists", "committed"),
    [
        pytest.param(
            {"kit": {0, 1, 2}, "app": {0, 1}},
            {tp("kit", 0): 5, tp("kit", 2): 7, tp("app", 1): 3},
            id="every partition exists",
        ),
        pytest.param(
            {"kit": {0}, "app": {0, 1}},
            {tp("kit", 0): 5, tp("app", 1): 3},
            id="fewer partitions: the gone one is dropped",
        ),
        pytest.param({"app": {0, 1}}, {tp("app", 1): 3}, id="a topic that is gone altogether"),
        pytest.param({}, {}, id="nothing left"),
    ],
)
async def test_offsets_of_gone_partitions_are_dropped(
    exists: dict[str, set[int]],
    committed: dict[TopicPartition, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = Consumer(set(ASSIGNED), exists)
    await Offsets(consumer, 0.05, Liveness(0)).commit(BATCH)
    assert consumer.committed == committed
    dropped = len(BATCH) - len(committed)
    warned = [r for r in caplog.records if "no longer exist" in r.getMessage()]
    assert len(warned) == (1 if dropped else 0)


async def test_a_commit_that_fails_while_every_partition_exists_is_an_outage() -> None:
    consumer = Consumer(set(ASSIGNED), {"kit": {0, 1, 2}, "app": {0, 1}})

    async def down(offsets: Mapping[TopicPartition, int]) -> None:
        raise kafka_errors.KafkaConnectionError("broker down")

    consumer.commit = down  # type: ignore[method-assign]
    with pytest.raises(kafka_errors.KafkaConnectionError):
        await Offsets(consumer, 0.05, Liveness(0)).commit(BATCH)


async def test_without_fresh_metadata_nothing_is_known_to_be_gone() -> None:
    consumer = Consumer(set(ASSIGNED), {"kit": {0}})
    consumer.metadata_answers = False
    with pytest.raises(TimeoutError):
        await Offsets(consumer, 0.05, Liveness(0)).commit(BATCH)
    assert consumer.committed == {}
