"""Kafka record -> :class:`consumers.types.Event` (CloudEvents 1.0 binary mode,
docs/contract.md §5).

Pure: a record that cannot be decoded raises :class:`DecodeError`, a poison error, because no
retry will ever make its bytes valid.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

import orjson

from consumers.errors import PoisonError
from consumers.types import Event, Position
from contract.records import (
    CE_ID,
    CE_PARTITIONKEY,
    CE_SOURCE,
    CE_SPECVERSION,
    CE_TIME,
    CE_TYPE,
    RECEIVED_AT,
)

Headers = tuple[tuple[str, bytes], ...]


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
            record.topic, record.partition, record.offset, record.key, record.value, tuple(headers)
        )


_VALUE = operator.itemgetter(1)
_BYTES, _PAIR = frozenset({bytes}), frozenset({tuple})


def parse_time(text: str) -> datetime:
    """RFC 3339 -> aware UTC datetime; a naive time is read as UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def decode(record: RawRecord) -> Event:
    # One pass over the headers (the first of a repeated name wins, as in RawRecord.header).
    headers: dict[str, bytes] = {}
    for name, raw in record.headers:
        headers.setdefault(name, raw)

    def header(name: str) -> str | None:
        raw = headers.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")

    def required(name: str, event_id: str | None) -> str:
        value = header(name)
        if not value:
            raise DecodeError(f"missing header {name}", event_id=event_id)
        return value

    event_id = header(CE_ID)
    specversion = header(CE_SPECVERSION)
    if specversion is not None and specversion != "1.0":
        raise DecodeError(f"unsupported ce_specversion {specversion!r}", event_id=event_id)
    event_id = required(CE_ID, None)
    source = required(CE_SOURCE, event_id)
    event_type = required(CE_TYPE, event_id)
    raw_time = required(CE_TIME, event_id)
    try:
        time = parse_time(raw_time)
    except ValueError:
        raise DecodeError(f"ce_time is not RFC 3339: {raw_time!r}", event_id=event_id) from None
    if record.value is None:
        raise DecodeError("record has no value", event_id=event_id)
    try:
        data = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"value is not JSON: {exc}", event_id=event_id) from None
    partition_key = header(CE_PARTITIONKEY)
    if partition_key is None:
        partition_key = (record.key or b"").decode("utf-8", "replace")
    return Event(
        source=source,
        id=event_id,
        type=event_type,
        time=time,
        partition_key=partition_key,
        data=data,
        received_at=_optional_time(header(RECEIVED_AT)),
        position=record.position,
    )


def _optional_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


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
