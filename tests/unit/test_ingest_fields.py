"""The one body decoder of every endpoint: JSON object, bounded depth, no U+0000 downstream."""

from __future__ import annotations

from typing import Any, Literal

import orjson
import pytest

from ingest import fields
from ingest.errors import BadRequest

DEPTH = fields.MAX_DEPTH


def nested(depth: int, *, key: str = "k") -> bytes:
    """A body whose containers nest exactly ``depth`` deep (the body is level 1)."""
    return b'{"a":' + (b'{"%s":' % key.encode()) * (depth - 1) + b"1" + b"}" * depth


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        pytest.param(b"{", "body is not valid JSON", id="syntax"),
        pytest.param(b"[]", "body must be a JSON object", id="array"),
        pytest.param(b'"\\ud800"', "body is not valid JSON", id="lone high surrogate escape"),
        pytest.param(b'{"a": "\\udc00"}', "body is not valid JSON", id="lone low surrogate"),
        pytest.param(b'{"a": "\xed\xa0\x80"}', "body is not valid JSON", id="surrogate bytes"),
        pytest.param(b'{"a": NaN}', "body is not valid JSON", id="NaN"),
        pytest.param(b'{"a": Infinity}', "body is not valid JSON", id="Infinity"),
        pytest.param(b'{"a": 1e400}', "body is not valid JSON", id="number overflows a double"),
        pytest.param(b"\xef\xbb\xbf{}", "body is not valid JSON", id="byte order mark"),
        pytest.param(b'{"a": "\x00"}', "body is not valid JSON", id="raw NUL byte"),
        pytest.param(nested(DEPTH + 1), f"a.k.k.k...: nested deeper than {DEPTH}", id="too deep"),
        pytest.param(
            b'{"data": [{"x": ' + b"[" * DEPTH + b"]" * DEPTH + b"}]}",
            f"data[0].x[0]...: nested deeper than {DEPTH}",
            id="too deep inside a batch",
        ),
        pytest.param(
            b'{"a": ' + b"[" * 1024 + b"]" * 1024 + b"}",
            "body is not valid JSON",
            id="deeper than the decoder takes",
        ),
    ],
)
def test_refused(raw: bytes, detail: str) -> None:
    with pytest.raises(BadRequest) as caught:
        fields.parse(raw)
    assert caught.value.detail.startswith(detail), caught.value.detail


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        pytest.param(nested(DEPTH), orjson.loads(nested(DEPTH)), id="at the depth limit"),
        pytest.param(
            b'{"a": "' + b"[" * 500 + b'"}', {"a": "[" * 500}, id="brackets inside a string"
        ),
        pytest.param(b'{"a": 1, "a": 2}', {"a": 2}, id="duplicate key: the last wins"),
        pytest.param(
            b'{"a": 123456789012345678901234567890}',
            {"a": 1.2345678901234568e29},
            id="int beyond 64 bits is a double",
        ),
        pytest.param(
            b'{"a": 18446744073709551615}', {"a": 2**64 - 1}, id="largest unsigned 64-bit int"
        ),
        pytest.param(b'{"a": "\\\\u0000"}', {"a": "\\u0000"}, id="escaped backslash, no NUL"),
    ],
)
def test_accepted(raw: bytes, body: dict[str, Any]) -> None:
    parsed = fields.parse(raw)
    assert parsed.body == body
    assert parsed.raw == raw


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        pytest.param(b'{"a": "x\\u0000y"}', {"a": "x\ufffdy"}, id="in a value"),
        pytest.param(b'{"a\\u0000": 1}', {"a\ufffd": 1}, id="in a key"),
        pytest.param(b'{"a": "\\u0000\\u0000"}', {"a": "\ufffd\ufffd"}, id="twice in a row"),
        pytest.param(b'{"a": "\\\\\\u0000"}', {"a": "\\\ufffd"}, id="after an escaped backslash"),
        pytest.param(b'{"a": ["\\u0000"]}', {"a": ["\ufffd"]}, id="in a list"),
    ],
)
def test_nul_is_replaced_in_provider_bodies(raw: bytes, body: dict[str, Any]) -> None:
    parsed = fields.parse(raw)
    assert parsed.body == body
    assert orjson.loads(parsed.raw) == body  # what the flow endpoint publishes


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        pytest.param(b'{"a": "x\\u0000"}', "a: must not contain U+0000", id="value"),
        pytest.param(
            b'{"events": [{}, {"metadata": {"k\\u0000": 1}}]}',
            "events[1].metadata.k\\u0000: must not contain U+0000",
            id="key",
        ),
        pytest.param(
            b'{"events": [{"a": {"b": {"c": {"d": "\\u0000"}}}}]}',
            "events[0].a.b...: must not contain U+0000",
            id="long path is cut",
        ),
    ],
)
def test_nul_is_refused_when_asked(raw: bytes, detail: str) -> None:
    with pytest.raises(BadRequest) as caught:
        fields.parse(raw, nul="reject")
    assert caught.value.detail == detail


@pytest.mark.parametrize("nul", ["replace", "reject"])
def test_escaped_backslash_before_u0000_is_no_nul(nul: Literal["replace", "reject"]) -> None:
    raw = b'{"a": "\\\\u0000"}'
    assert fields.parse(raw, nul=nul).raw == raw


@pytest.mark.parametrize(
    ("value", "limit", "expected"),
    [
        pytest.param({}, 1, False, id="empty object is level 1"),
        pytest.param({"a": []}, 1, True, id="level 2 over 1"),
        pytest.param({"a": [[], {"b": {}}]}, 4, False, id="siblings"),
        pytest.param({"a": [[], {"b": {}}]}, 3, True, id="deepest sibling counts"),
        pytest.param({"a": "[[[[", "b": 1}, 1, False, id="strings are no containers"),
    ],
)
def test_deeper_than(value: Any, limit: int, expected: bool) -> None:
    assert fields.deeper_than(value, limit) is expected
    assert fields.deeper_than(value, limit, orjson.dumps(value)) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(b"-9223372036854775808", "-9223372036854775808", id="int64 minimum"),
        pytest.param(b"18446744073709551615", "18446744073709551615", id="uint64 maximum"),
        pytest.param(b"42.0", "42", id="integral float"),
        pytest.param(b"-9223372036854775809", None, id="below: rounds to -2**63 as a float"),
        pytest.param(b"18446744073709551616", None, id="above"),
        pytest.param(b"1e300", None, id="far above"),
    ],
)
def test_integer_ids_within_64_bits(text: bytes, expected: str | None) -> None:
    """An id read from the wire, as the schema bounds it (integer, -2**63..2**64-1)."""
    value = orjson.loads(text)
    if expected is None:
        with pytest.raises(BadRequest):
            fields.require_id(value, "id")
    else:
        assert fields.require_id(value, "id") == expected
