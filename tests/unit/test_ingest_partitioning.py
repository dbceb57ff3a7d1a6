"""The publisher's partitioner puts every key where aiokafka's default partitioner would."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference_murmur2

from ingest.partitioning import murmur2, partition_for

KEYS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"a", id="1 byte tail"),
    pytest.param(b"ab", id="2 byte tail"),
    pytest.param(b"abc", id="3 byte tail"),
    pytest.param(b"abcd", id="one word"),
    pytest.param(b"0b5e7a52-6d1f-4c8e-9a43-2f1d7c3e9b10", id="user uuid"),
    pytest.param(b"jane@example.com", id="email"),
    pytest.param("jörg@exämple.com".encode(), id="utf-8 email"),
    pytest.param(bytes(range(256)), id="every byte value"),
    pytest.param(b"\xff" * 41, id="high bytes, odd length"),
]


@pytest.mark.parametrize("key", KEYS)
def test_murmur2_matches_aiokafka(key: bytes) -> None:
    assert murmur2(key) == reference_murmur2(key)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("count", [1, 3, 6, 7, 12])
def test_partition_matches_the_default_partitioner(key: bytes, count: int) -> None:
    partitions = list(range(count))

    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
