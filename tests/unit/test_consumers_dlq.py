from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from consumers import dlq
from consumers.decode import RawRecord
from core.settings import Settings

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CE = (("ce_id", b"evt-9"), ("ce_source", b"kit"), ("ce_type", b"kit.subscriber.activated"))


def record(
    headers: tuple[tuple[str, bytes], ...] = CE, topic: str = "p.ingest.kit.v1"
) -> RawRecord:
    return RawRecord(topic, 2, 41, b"key", b'{"x": 1}', headers)


def as_dict(headers: tuple[tuple[str, bytes], ...]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers}


def test_dead_letter_headers_name_source_and_error() -> None:
    letter = dlq.DeadLetter(record(), asyncpg.NotNullViolationError("null email"), attempts=3)
    headers = as_dict(dlq.dead_letter_headers(letter, "ingester", NOW))
    assert headers[dlq.SOURCE_TOPIC] == "p.ingest.kit.v1"
    assert headers[dlq.SOURCE_PARTITION] == "2"
    assert headers[dlq.SOURCE_OFFSET] == "41"
    assert headers[dlq.ERROR_CLASS] == "NotNullViolationError"
    assert headers[dlq.ERROR] == "null email"
    assert headers[dlq.ATTEMPTS] == "3"
    assert headers[dlq.DEAD_AT] == "2024-05-01T12:00:00.000Z"
    assert headers[dlq.CONSUMER_GROUP] == "ingester"
    assert headers["ce_id"] == "evt-9"


def test_a_second_death_replaces_the_first_description() -> None:
    first = dlq.dead_letter_headers(dlq.DeadLetter(record(), ValueError("first"), 1), "g", NOW)
    replay = dlq.plan_replay(RawRecord("p.ingest.dlq.v1", 0, 0, b"key", b"{}", first), 3)
    again = dlq.dead_letter_headers(
        dlq.DeadLetter(
            RawRecord("p.ingest.kit.v1", 0, 7, b"key", b"{}", replay.headers),
            ValueError("second"),
            2,
        ),
        "g",
        NOW,
    )
    names = [k for k, _ in again]
    assert names.count(dlq.ERROR) == 1
    assert as_dict(again)[dlq.ERROR] == "second"
    assert as_dict(again)[dlq.REPLAY_COUNT] == "1"


def dead(replays: int | None, topic: bytes | None = b"p.ingest.kit.v1") -> RawRecord:
    headers = [*CE, (dlq.ERROR, b"boom")]
    if topic is not None:
        headers.append((dlq.SOURCE_TOPIC, topic))
    if replays is not None:
        headers.append((dlq.REPLAY_COUNT, str(replays).encode()))
    return RawRecord("p.ingest.dlq.v1", 0, 5, b"key", b'{"x": 1}', tuple(headers))


@pytest.mark.parametrize(
    ("replays", "count"),
    [pytest.param(None, 1, id="first replay"), pytest.param(2, 3, id="third replay")],
)
def test_plan_replay(replays: int | None, count: int) -> None:
    plan = dlq.plan_replay(dead(replays), max_replays=3)
    assert plan.topic == "p.ingest.kit.v1"
    assert plan.key == b"key" and plan.value == b'{"x": 1}'
    assert plan.count == count
    headers = as_dict(plan.headers)
    assert headers[dlq.REPLAY_COUNT] == str(count)
    assert dlq.ERROR not in headers and dlq.SOURCE_TOPIC not in headers
    assert headers["ce_id"] == "evt-9"


@pytest.mark.parametrize(
    ("record_", "message"),
    [
        pytest.param(dead(3), "already replayed 3 times", id="replayed too often"),
        pytest.param(dead(None, topic=None), "header missing", id="no source topic"),
    ],
)
def test_refused_replays(record_: RawRecord, message: str) -> None:
    with pytest.raises(dlq.ReplayRefused, match=message):
        dlq.plan_replay(record_, max_replays=3)


def test_garbled_replay_count_reads_as_zero() -> None:
    headers = (*CE, (dlq.REPLAY_COUNT, b"many"))
    assert dlq.replay_count(RawRecord("t", 0, 0, None, None, headers)) == 0


def test_log_row_strips_nul() -> None:
    letter = dlq.DeadLetter(record(), ValueError("bad \x00 byte"), 1, event_id="a\x00b")
    row = dlq.log_row(letter)
    assert "\x00" not in row.error and row.event_id is not None and "\x00" not in row.event_id
    assert row.source == "kit"
    assert (row.position.topic, row.position.partition, row.position.offset) == (
        "p.ingest.kit.v1",
        2,
        41,
    )


def test_describe() -> None:
    letter = dlq.DeadLetter(record(), KeyError("profile"), 2)
    described = dlq.describe(
        RawRecord("dlq", 1, 9, b"k", b"{}", dlq.dead_letter_headers(letter, "g", NOW))
    )
    assert described.dlq_offset == "1:9"
    assert described.source == "p.ingest.kit.v1:2@41"
    assert described.error_class == "KeyError"
    assert described.event_id == "evt-9"
    assert described.replays == 0


def test_the_sink_is_built_from_the_settings() -> None:
    settings = Settings(topic_prefix="p.", consumer_group="crm", kafka_io_timeout_s=3.0)
    sink = dlq.DeadLetterSink.from_settings(settings, producer=None)
    assert (sink.topic, sink.group, sink.timeout_s) == ("p.ingest.dlq.v1", "crm", 3.0)


class _Unacknowledged:
    """A producer whose broker never acknowledges."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, **record: Any) -> asyncio.Future[None]:
        self.sent.append(topic)
        return asyncio.get_running_loop().create_future()


async def test_a_publish_is_bounded_by_the_sink_timeout() -> None:
    producer = _Unacknowledged()
    sink = dlq.DeadLetterSink(producer, "p.ingest.dlq.v1", "g", timeout_s=0.01)
    with pytest.raises(TimeoutError):
        await sink.publish([dlq.DeadLetter(record(), ValueError("bad"), 1)])
    assert producer.sent == ["p.ingest.dlq.v1"]
