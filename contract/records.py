"""The record vocabulary shared by ingest (which builds records) and consumers (which read them).

Records follow CloudEvents 1.0 binary mode (docs/contract.md §5): the value is the event's JSON
bytes and the attributes travel as Kafka headers (:mod:`contract.headers`). The record key is
the partition key, so every event of one user lands on one partition in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from contract.headers import Headers, encode_headers, trace_headers
from contract.topics import STREAM_OF_SOURCE


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, ready to publish. ``stream`` is resolved to a topic by the publisher."""

    stream: str
    key: bytes
    value: bytes
    headers: Headers

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode()
        return None


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with millisecond precision and a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloudevent(
    *,
    source: str,
    event_id: str,
    event_type: str,
    time: str,
    partition_key: str,
    value: bytes,
    received_at: str,
) -> Record:
    """Build the binary-mode CloudEvents record for one provider event."""
    return Record(
        stream=STREAM_OF_SOURCE[source],
        key=partition_key.encode(),
        value=value,
        headers=encode_headers(
            event_id=event_id,
            source=source,
            event_type=event_type,
            time=time,
            partition_key=partition_key,
            received_at=received_at,
        ),
    )


def traced(records: list[Record], traceparent: str) -> list[Record]:
    """``records`` carrying the trace of the request that published them."""
    extra = trace_headers(traceparent)
    return [Record(r.stream, r.key, r.value, r.headers + extra) for r in records]
