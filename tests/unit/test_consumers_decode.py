from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.decode import DecodeError, RawRecord, committable, decode, decode_all
from consumers.types import Position
from contract.records import cloudevent


def raw(
    headers: tuple[tuple[str, bytes], ...],
    value: bytes | None = b"{}",
    offset: int = 0,
    partition: int = 0,
    key: bytes | None = b"k",
) -> RawRecord:
    return RawRecord("t", partition, offset, key, value, headers)


def good_headers(**changes: bytes) -> tuple[tuple[str, bytes], ...]:
    record = cloudevent(
        source="kit",
        event_id="evt-1",
        event_type="kit.subscriber.activated",
        time="2024-01-04T18:05:25.000Z",
        partition_key="jane@example.com",
        value=b"{}",
        received_at="2024-01-04T18:05:26.000Z",
    )
    headers = dict(record.headers)
    for name, value in changes.items():
        headers[name] = value
    return tuple((k, v) for k, v in headers.items() if v != b"<drop>")


def test_decodes_a_cloudevent() -> None:
    event = decode(raw(good_headers(), b'{"a": 1}', offset=7))
    assert event.source == "kit"
    assert event.id == "evt-1"
    assert event.type == "kit.subscriber.activated"
    assert event.time == datetime(2024, 1, 4, 18, 5, 25, tzinfo=UTC)
    assert event.partition_key == "jane@example.com"
    assert event.data == {"a": 1}
    assert event.received_at == datetime(2024, 1, 4, 18, 5, 26, tzinfo=UTC)
    assert event.position == Position("t", 0, 7)


@pytest.mark.parametrize(
    ("headers", "value", "message"),
    [
        pytest.param(good_headers(ce_id=b"<drop>"), b"{}", "missing header ce_id", id="no id"),
        pytest.param(good_headers(ce_time=b"yesterday"), b"{}", "RFC 3339", id="bad time"),
        pytest.param(good_headers(), b"{not json", "not JSON", id="bad json"),
        pytest.param(good_headers(), None, "no value", id="tombstone"),
    ],
)
def test_undecodable_records_are_poison(
    headers: tuple[tuple[str, bytes], ...], value: bytes | None, message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(raw(headers, value))


def test_poison_names_the_event_when_it_can() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(raw(good_headers(), b"nope"))
    assert caught.value.event_id == "evt-1"


def test_decode_all_sorts_and_keeps_poison_in_place() -> None:
    records = [
        raw(good_headers(), b"{}", offset=2),
        raw(good_headers(), b"bad", offset=1),
        raw(good_headers(), b"{}", offset=0, partition=1),
    ]
    items = decode_all(records)
    assert [(i.raw.partition, i.raw.offset) for i in items] == [(0, 1), (0, 2), (1, 0)]
    assert items[0].event is None and isinstance(items[0].error, DecodeError)
    assert items[1].event is not None


def test_committable_is_the_next_offset_per_partition() -> None:
    records = [raw((), offset=o, partition=p) for p, o in [(0, 4), (0, 9), (1, 3), (0, 5)]]
    assert committable(records) == {("t", 0): 10, ("t", 1): 4}


@dataclass
class _Fetched:
    """The attributes of an aiokafka ConsumerRecord that RawRecord.of reads."""

    headers: Any
    topic: str = "t"
    partition: int = 1
    offset: int = 7
    key: bytes | None = b"k"
    value: bytes | None = b"{}"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param([("a", b"1"), ("b", b"2")], (("a", b"1"), ("b", b"2")), id="bytes pairs"),
        pytest.param((("a", b"1"),), (("a", b"1"),), id="tuple of pairs"),
        pytest.param([("a", None), ("b", b"2")], (("a", b""), ("b", b"2")), id="None is empty"),
        pytest.param([("a", bytearray(b"1"))], (("a", b"1"),), id="buffer becomes bytes"),
        pytest.param([["a", b"1"]], (("a", b"1"),), id="list pair becomes a tuple"),
        pytest.param(None, (), id="no headers"),
        pytest.param([], (), id="empty headers"),
    ],
)
def test_raw_record_copies_headers_as_bytes_pairs(headers: Any, expected: Any) -> None:
    raw = RawRecord.of(_Fetched(headers))
    assert raw == RawRecord("t", 1, 7, b"k", b"{}", expected)
    assert all(type(pair) is tuple and type(pair[1]) is bytes for pair in raw.headers)
