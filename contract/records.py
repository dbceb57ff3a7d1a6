"""The record vocabulary shared by ingest (which builds records) and consumers (which read them).

Records follow CloudEvents 1.0 binary mode (docs/contract.md §5): the value is the event's JSON
bytes and the attributes travel as Kafka headers. The record key is the partition key, so
every event of one user lands on one partition in arrival order.
"""

from __future__ import annotations

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

# ce_source values
SOURCE_REVENUECAT = "revenuecat"
SOURCE_KLAVIYO = "klaviyo"
SOURCE_KIT = "kit"
SOURCE_APP = "app"

# ce_source -> logical stream (see core.topics.STREAMS)
STREAM_OF_SOURCE = {
    SOURCE_REVENUECAT: "revenuecat",
    SOURCE_KLAVIYO: "klaviyo",
    SOURCE_KIT: "kit",
    SOURCE_APP: "experiments",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record, ready to publish. ``stream`` is resolved to a topic by the publisher."""

    stream: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode()
        return None


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with millisecond precision and a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_epoch_ms(ms: float) -> str:
    return rfc3339(datetime.fromtimestamp(ms / 1000.0, UTC))


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
        headers=(
            (CE_SPECVERSION, b"1.0"),
            (CE_ID, event_id.encode()),
            (CE_SOURCE, source.encode()),
            (CE_TYPE, event_type.encode()),
            (CE_TIME, time.encode()),
            (CE_PARTITIONKEY, partition_key.encode()),
            (CONTENT_TYPE, b"application/json"),
            (RECEIVED_AT, received_at.encode()),
        ),
    )
