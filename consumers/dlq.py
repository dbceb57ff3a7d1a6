"""Dead letters: the record as it was read, plus headers saying where it came from and why
it could not apply (docs/contract.md §6). Replaying re-publishes it to its source topic with a
replay counter, so a record that keeps failing stops coming back.

Header names (all values UTF-8 text):
- ``ingest_dlq_source_topic``, ``ingest_dlq_source_partition``, ``ingest_dlq_source_offset``
- ``ingest_dlq_error_class`` (e.g. ``NotNullViolationError``), ``ingest_dlq_error`` (message)
- ``ingest_dlq_attempts``: failed transactions the record was part of before it was isolated
- ``ingest_dlq_dead_at`` (RFC 3339), ``ingest_dlq_consumer_group``
- ``ingest_replay_count``: how often ``ingester dlq replay`` re-published it (absent = 0)
The original CloudEvents headers, key and value are kept unchanged.

One :class:`DeadLetterSink` per process publishes them (the runner's poison, the pending
retry's, ``ingester pending retry``'s), as arroyo's ``KafkaDlqProducer`` does for its
``DlqPolicy``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumers import store
from consumers.classify import error_class, error_message
from consumers.decode import RawRecord
from contract.headers import CE_ID, CE_PARTITIONKEY, CE_SOURCE, Headers
from contract.records import rfc3339
from contract.topics import DLQ, topic_name
from core.settings import Settings

SOURCE_TOPIC = "ingest_dlq_source_topic"
SOURCE_PARTITION = "ingest_dlq_source_partition"
SOURCE_OFFSET = "ingest_dlq_source_offset"
ERROR_CLASS = "ingest_dlq_error_class"
ERROR = "ingest_dlq_error"
ATTEMPTS = "ingest_dlq_attempts"
DEAD_AT = "ingest_dlq_dead_at"
CONSUMER_GROUP = "ingest_dlq_consumer_group"
REPLAY_COUNT = "ingest_replay_count"

_DLQ_PREFIX = "ingest_dlq_"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: RawRecord  # the record as read; its topic/partition/offset are the source position
    error: BaseException
    attempts: int
    source: str | None = None
    event_id: str | None = None

    @property
    def error_class(self) -> str:
        return error_class(self.error)

    @property
    def message(self) -> str:
        return error_message(self.error)


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a poison record may well contain one.
    return value.replace("\x00", "\ufffd") if value is not None else None


def log_row(letter: DeadLetter) -> store.DeadLetterRow:
    """The ``ingest_dead_letters`` row that records this letter locally."""
    return store.DeadLetterRow(
        source=_text(letter.source or letter.raw.header(CE_SOURCE)),
        event_id=_text(letter.event_id or letter.raw.header(CE_ID)),
        position=letter.raw.position,
        error_class=letter.error_class,
        error=_text(letter.message) or "",
        partition_key=_text(letter.raw.header(CE_PARTITIONKEY)),
    )


def dead_letter_headers(letter: DeadLetter, group: str, dead_at: datetime) -> Headers:
    """The original headers without any earlier DLQ headers (a replayed record that fails
    again is described by its latest failure), then the DLQ headers."""
    kept = tuple((k, v) for k, v in letter.raw.headers if not k.startswith(_DLQ_PREFIX))
    raw = letter.raw
    return (
        *kept,
        (SOURCE_TOPIC, raw.topic.encode()),
        (SOURCE_PARTITION, str(raw.partition).encode()),
        (SOURCE_OFFSET, str(raw.offset).encode()),
        (ERROR_CLASS, letter.error_class.encode()),
        (ERROR, letter.message.encode()),
        (ATTEMPTS, str(letter.attempts).encode()),
        (DEAD_AT, rfc3339(dead_at).encode()),
        (CONSUMER_GROUP, group.encode()),
    )


@dataclass(frozen=True, slots=True)
class DeadLetterSink:
    """Where dead letters go: ``topic`` through a started ``producer`` (``acks=all``), marked
    as given up by ``group``. Each publish waits for every acknowledgement, at most
    ``timeout_s``; the producer's error (or TimeoutError) tells the caller to retry."""

    producer: Any
    topic: str
    group: str
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings, producer: Any) -> DeadLetterSink:
        """The DLQ topic of ``TOPIC_PREFIX``, ``CONSUMER_GROUP``, bounded by
        ``KAFKA_IO_TIMEOUT_S``."""
        return cls(
            producer,
            topic_name(settings.topic_prefix, DLQ),
            settings.consumer_group,
            settings.kafka_io_timeout_s,
        )

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        async with asyncio.timeout(self.timeout_s):
            now = datetime.now(UTC)
            futures = [
                await self.producer.send(
                    self.topic,
                    value=letter.raw.value,
                    key=letter.raw.key,
                    headers=list(dead_letter_headers(letter, self.group, now)),
                )
                for letter in letters
            ]
            await asyncio.gather(*futures)


class ReplayRefused(Exception):
    """This dead letter must not be replayed (replayed too often, or unreadable headers)."""


@dataclass(frozen=True, slots=True)
class Replay:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    count: int  # the replay counter the re-published record carries


def replay_count(record: RawRecord) -> int:
    text = record.header(REPLAY_COUNT)
    try:
        return max(0, int(text)) if text else 0
    except ValueError:
        return 0


def plan_replay(record: RawRecord, max_replays: int) -> Replay:
    """What re-publishing this DLQ record means: same key, value and CloudEvents headers,
    back on its source topic, with the replay counter incremented."""
    topic = record.header(SOURCE_TOPIC)
    if not topic:
        raise ReplayRefused(f"{SOURCE_TOPIC} header missing")
    count = replay_count(record)
    if count >= max_replays:
        raise ReplayRefused(f"already replayed {count} times (DLQ_MAX_REPLAYS={max_replays})")
    kept = tuple(
        (k, v) for k, v in record.headers if not k.startswith(_DLQ_PREFIX) and k != REPLAY_COUNT
    )
    headers = (*kept, (REPLAY_COUNT, str(count + 1).encode()))
    return Replay(topic, record.key, record.value, headers, count + 1)


@dataclass(frozen=True, slots=True)
class Described:
    """One DLQ record for ``ingester dlq list``."""

    dlq_offset: str  # partition:offset in the DLQ topic
    source: str  # topic:partition@offset it was read from
    error_class: str
    error: str
    attempts: str
    event_id: str
    replays: int
    dead_at: str


def describe(record: RawRecord) -> Described:
    return Described(
        dlq_offset=f"{record.partition}:{record.offset}",
        source=(
            f"{record.header(SOURCE_TOPIC) or '?'}:{record.header(SOURCE_PARTITION) or '?'}"
            f"@{record.header(SOURCE_OFFSET) or '?'}"
        ),
        error_class=record.header(ERROR_CLASS) or "?",
        error=record.header(ERROR) or "",
        attempts=record.header(ATTEMPTS) or "?",
        event_id=record.header(CE_ID) or "-",
        replays=replay_count(record),
        dead_at=record.header(DEAD_AT) or "?",
    )
