"""The CloudEvents headers, written and read by the contract's one pair of functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from contract import tracecontext
from contract.headers import (
    CE_TRACEPARENT,
    TRACEPARENT,
    Attributes,
    Headers,
    InvalidHeaders,
    decode_headers,
    encode_headers,
    parse_time,
)

JAN_4 = datetime(2024, 1, 4, 18, 5, 25, tzinfo=UTC)


def headers(received_at: str | None = "2024-01-04T18:05:26.000Z", **changes: bytes) -> Headers:
    """Good headers with some values changed; ``b"<drop>"`` leaves a header out."""
    encoded = encode_headers(
        event_id="evt-1",
        source="kit",
        event_type="kit.subscriber.activated",
        time="2024-01-04T18:05:25.000Z",
        partition_key="jane@example.com",
        received_at=received_at,
    )
    found = dict(encoded)
    found.update(changes)
    return tuple((k, v) for k, v in found.items() if v != b"<drop>")


def test_encode_writes_the_binary_mode_headers_in_order() -> None:
    assert headers() == (
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"kit"),
        ("ce_type", b"kit.subscriber.activated"),
        ("ce_time", b"2024-01-04T18:05:25.000Z"),
        ("ce_partitionkey", b"jane@example.com"),
        ("content-type", b"application/json"),
        ("ingest_received_at", b"2024-01-04T18:05:26.000Z"),
    )
    assert [name for name, _ in headers(received_at=None)][-1] == "content-type"


def test_decode_reads_what_encode_wrote() -> None:
    assert decode_headers(headers(), b"key") == Attributes(
        id="evt-1",
        source="kit",
        type="kit.subscriber.activated",
        time=JAN_4,
        partition_key="jane@example.com",
        received_at=datetime(2024, 1, 4, 18, 5, 26, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("changed", "message", "event_id"),
    [
        pytest.param(headers(ce_id=b"<drop>"), "missing header ce_id", None, id="no id"),
        pytest.param(headers(ce_source=b""), "missing header ce_source", "evt-1", id="empty"),
        pytest.param(headers(ce_type=b"<drop>"), "missing header ce_type", "evt-1", id="no type"),
        pytest.param(headers(ce_time=b"yesterday"), "not RFC 3339", "evt-1", id="bad time"),
        pytest.param(headers(ce_specversion=b"0.3"), "specversion", "evt-1", id="old spec"),
        pytest.param(
            headers(ce_specversion=b"0.3", ce_id=b"<drop>"), "specversion", None, id="old, no id"
        ),
    ],
)
def test_headers_the_contract_cannot_read_are_refused(
    changed: Headers, message: str, event_id: str | None
) -> None:
    with pytest.raises(InvalidHeaders, match=message) as caught:
        decode_headers(changed, b"key")
    assert caught.value.event_id == event_id


@pytest.mark.parametrize(
    ("changed", "key", "partition_key", "received_at"),
    [
        pytest.param(headers(ce_partitionkey=b"<drop>"), b"from-key", "from-key", True, id="key"),
        pytest.param(headers(ce_partitionkey=b"<drop>"), None, "", True, id="no key either"),
        pytest.param(headers(received_at=None), b"k", "jane@example.com", False, id="no receipt"),
        pytest.param(
            headers(ingest_received_at=b"soon"), b"k", "jane@example.com", False, id="bad receipt"
        ),
        pytest.param(
            (*headers(), ("ce_partitionkey", b"later")), b"k", "jane@example.com", True,
            id="first of a repeated header",
        ),
    ],
)  # fmt: skip
def test_optional_attributes(
    changed: Headers, key: bytes | None, partition_key: str, received_at: bool
) -> None:
    attributes = decode_headers(changed, key)
    assert attributes.partition_key == partition_key
    assert (attributes.received_at is not None) is received_at


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2024-01-04T18:05:25Z", JAN_4, id="Z"),
        pytest.param("2024-01-04T20:05:25+02:00", JAN_4, id="offset"),
        pytest.param("2024-01-04T18:05:25", JAN_4, id="naive"),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1),
            id="version 00",
        ),
        pytest.param(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more",
            (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 0),
            id="a later version, read by its first fields",
        ),
        pytest.param("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None, id="zero trace id"),
        pytest.param(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01", None, id="zero span"
        ),
        pytest.param("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None, id="ff"),
        pytest.param("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None, id="upper"),
        pytest.param("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", None, id="00+"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_traceparent_is_read_as_w3c_trace_context(
    value: str | None, expected: tuple[int, int, int] | None
) -> None:
    parsed = tracecontext.parse(value)
    got = None if parsed is None else (parsed.trace_id, parsed.span_id, parsed.flags)
    assert got == expected


def test_a_started_trace_is_valid_and_written_as_version_00() -> None:
    started = tracecontext.start()
    assert tracecontext.parse(str(started)) == started
    assert str(started).startswith("00-") and str(started).endswith("-01")


def test_the_trace_travels_in_both_headers_and_is_read_back() -> None:
    value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    headers = encode_headers(
        event_id="e", source="kit", event_type="kit.x", time="2026-01-01T00:00:00.000Z",
        partition_key="k", received_at=None, traceparent=value,
    )  # fmt: skip
    assert dict(headers)[CE_TRACEPARENT] == dict(headers)[TRACEPARENT] == value.encode()
    assert decode_headers(headers, b"k").traceparent == value
    only_extension = [(n, v) for n, v in headers if n != TRACEPARENT]
    assert decode_headers(only_extension, b"k").traceparent == value
