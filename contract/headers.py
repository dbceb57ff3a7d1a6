"""The CloudEvents 1.0 binary-mode headers of a record (docs/contract.md §5), written by
ingest and read by the consumers, here in both directions so the two cannot drift.

The event's attributes travel as Kafka headers (``ce_*``, plus ``content-type`` and
``ingest_received_at``); the value is the event's JSON bytes and the record key its partition
key. Decoding is pure: headers this side of the contract cannot read raise
:class:`InvalidHeaders`, naming the event when its id could be read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

CE_SPECVERSION = "ce_specversion"
CE_ID = "ce_id"
CE_SOURCE = "ce_source"
CE_TYPE = "ce_type"
CE_TIME = "ce_time"
CE_PARTITIONKEY = "ce_partitionkey"
CONTENT_TYPE = "content-type"
RECEIVED_AT = "ingest_received_at"
# The trace that published the record, one value in two headers (contract.tracecontext).
CE_TRACEPARENT = "ce_traceparent"
TRACEPARENT = "traceparent"

SPECVERSION = "1.0"

Headers = tuple[tuple[str, bytes], ...]


def encode_headers(
    *,
    event_id: str,
    source: str,
    event_type: str,
    time: str,
    partition_key: str,
    received_at: str | None,
    traceparent: str | None = None,
) -> Headers:
    """The headers of one event; ``ingest_received_at`` only when the receive time is known
    (an event rebuilt from the pending table has lost it), the trace headers only when a
    trace is known."""
    headers: Headers = (
        (CE_SPECVERSION, SPECVERSION.encode()),
        (CE_ID, event_id.encode()),
        (CE_SOURCE, source.encode()),
        (CE_TYPE, event_type.encode()),
        (CE_TIME, time.encode()),
        (CE_PARTITIONKEY, partition_key.encode()),
        (CONTENT_TYPE, b"application/json"),
    )
    if received_at is not None:
        headers = (*headers, (RECEIVED_AT, received_at.encode()))
    return headers if traceparent is None else (*headers, *trace_headers(traceparent))


def trace_headers(traceparent: str) -> Headers:
    """The two headers that carry a record's trace (``ce_traceparent`` and ``traceparent``)."""
    value = traceparent.encode()
    return ((CE_TRACEPARENT, value), (TRACEPARENT, value))


@dataclass(frozen=True, slots=True)
class Attributes:
    """What the headers (and the key) of one record say about its event."""

    id: str
    source: str
    type: str
    time: datetime
    partition_key: str
    received_at: datetime | None
    traceparent: str | None = None  # as sent; contract.tracecontext.parse reads it


class InvalidHeaders(ValueError):
    """Headers that are not a CloudEvent this contract describes."""

    def __init__(self, message: str, event_id: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.event_id = event_id


def parse_time(text: str) -> datetime:
    """RFC 3339 -> aware UTC datetime; a naive time is read as UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def decode_headers(headers: Iterable[tuple[str, bytes]], key: bytes | None) -> Attributes:
    """Read the attributes of one record. The first of a repeated header wins; without
    ``ce_partitionkey`` the record key is the partition key; an unreadable
    ``ingest_received_at`` is left out rather than refusing the event over it."""
    found: dict[str, bytes] = {}
    for name, raw in headers:
        found.setdefault(name, raw)

    def header(name: str) -> str | None:
        raw = found.get(name)
        return None if raw is None else raw.decode("utf-8", "replace")

    def required(name: str, event_id: str | None) -> str:
        value = header(name)
        if not value:
            raise InvalidHeaders(f"missing header {name}", event_id)
        return value

    specversion = header(CE_SPECVERSION)
    if specversion is not None and specversion != SPECVERSION:
        raise InvalidHeaders(f"unsupported ce_specversion {specversion!r}", header(CE_ID))
    event_id = required(CE_ID, None)
    source = required(CE_SOURCE, event_id)
    event_type = required(CE_TYPE, event_id)
    raw_time = required(CE_TIME, event_id)
    try:
        time = parse_time(raw_time)
    except ValueError:
        raise InvalidHeaders(f"ce_time is not RFC 3339: {raw_time!r}", event_id) from None
    partition_key = header(CE_PARTITIONKEY)
    if partition_key is None:
        partition_key = (key or b"").decode("utf-8", "replace")
    return Attributes(
        id=event_id,
        source=source,
        type=event_type,
        time=time,
        partition_key=partition_key,
        received_at=_optional_time(header(RECEIVED_AT)),
        traceparent=header(TRACEPARENT) or header(CE_TRACEPARENT),
    )


def _optional_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None
