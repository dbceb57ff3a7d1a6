"""Kafka record -> :class:`consumers.types.Event` (CloudEvents 1.0 binary mode,
docs/contract.md §5; the headers are read by :func:`contract.headers.decode_headers`).

Pure: a record that cannot be decoded raises :class:`DecodeError`, a poison error, because no
retry will ever make its bytes valid.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from consumers.errors import PoisonError
from consumers.types import Event, Position
from contract.headers import Headers, InvalidHeaders, decode_headers


def is_object(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)`` without the ABC check for the JSON object (a dict) that
    decoding makes of nearly every value: the handlers ask it several times per event."""
    return type(value) is dict or isinstance(value, Mapping)


class DecodeError(PoisonError):
    """The record is not a CloudEvent this runtime can read."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """The bytes of one fetched record, kept until its offset is committed (for the DLQ)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    # The record's Kafka timestamp (ms); replay reads a time window by it.
    timestamp_ms: int | None = field(default=None, compare=False)

    @property
    def position(self) -> Position:
        return Position(self.topic, self.partition, self.offset)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    @classmethod
    def of(cls, record: Any) -> RawRecord:
        """Copy an aiokafka ``ConsumerRecord``."""
        headers = record.headers or ()
        # aiokafka gives (str, bytes | None) pairs; None (or another buffer) becomes bytes.
        # The check runs in C (map, type, set): this runs for every header of every record.
        plain = set(map(type, map(_VALUE, headers))) <= _BYTES
        if not (plain and set(map(type, headers)) <= _PAIR):
            headers = [(k, v if type(v) is bytes else bytes(v or b"")) for k, v in headers]
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            tuple(headers),
            getattr(record, "timestamp", None),
        )


_VALUE = operator.itemgetter(1)
_BYTES, _PAIR = frozenset({bytes}), frozenset({tuple})


def decode(record: RawRecord) -> Event:
    try:
        attributes = decode_headers(record.headers, record.key)
    except InvalidHeaders as exc:
        raise DecodeError(exc.message, event_id=exc.event_id) from None
    if record.value is None:
        raise DecodeError("record has no value", event_id=attributes.id)
    try:
        data = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"value is not JSON: {exc}", event_id=attributes.id) from None
    return Event(
        source=attributes.source,
        id=attributes.id,
        type=attributes.type,
        time=attributes.time,
        partition_key=attributes.partition_key,
        data=data,
        received_at=attributes.received_at,
        position=record.position,
    )


@dataclass(frozen=True, slots=True)
class Item:
    """One fetched record and what decoding made of it: an event, or the poison error."""

    raw: RawRecord
    event: Event | None
    error: PoisonError | None = None


def decode_all(records: Sequence[RawRecord]) -> list[Item]:
    """Decode in offset order per partition (records are sorted by topic, partition, offset)."""
    items: list[Item] = []
    for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        try:
            items.append(Item(record, decode(record)))
        except DecodeError as exc:
            items.append(Item(record, None, exc))
    return items


def committable(records: Sequence[RawRecord]) -> dict[tuple[str, int], int]:
    """The offsets to commit once every record of the batch is handled: next offset per
    partition (Kafka commits the offset of the next record to read)."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, 0), record.offset + 1)
    return offsets
