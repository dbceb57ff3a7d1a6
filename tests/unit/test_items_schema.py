"""The shared item table (contract.items): its parsers, and proof that both sides read it alike."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consumers.decode import RawRecord, decode
from consumers.errors import PoisonError
from consumers.handlers.experiment_items import Item, parse_item
from consumers.types import Event
from contract import items, times
from contract.items import InvalidField
from ingest.errors import BadRequest
from ingest.providers import events

RECEIVED = "2026-03-01T12:00:00.000Z"
ID = "0b5e7a52-6d1f-4c8e-9a43-2f1d7c3e9b10"
USER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def item(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": ID,
        "type": "impression",
        "user_id": USER,
        "experiment": "checkout",
        "variant": "green",
        "occurred_at": "2026-01-01T10:00:00+02:00",
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("parse", "value", "expected"),
    [
        pytest.param(items.text(), "", "", id="text empty allowed"),
        pytest.param(items.text(2), "ab", "ab", id="text at limit"),
        pytest.param(items.text(non_empty=True), " a ", " a ", id="text kept as given"),
        pytest.param(items.one_of("a", "b"), "b", "b", id="enum"),
        pytest.param(items.integer(), -(2**31), -(2**31), id="int4 min"),
        pytest.param(items.integer(), 2**31 - 1, 2**31 - 1, id="int4 max"),
        pytest.param(items.integer(0, 100), 3.0, 3, id="integral float is an integer"),
        pytest.param(items.boolean, False, False, id="false"),
        pytest.param(items.json_object, {"a": [1]}, {"a": [1]}, id="object"),
        pytest.param(items.identifier, ID.upper(), uuid.UUID(ID), id="uuid upper case"),
        pytest.param(items.country, "de", "de", id="country lower case"),
        pytest.param(
            items.instant,
            "2026-01-01t10:00:00.123456789+02:00",
            datetime(2026, 1, 1, 8, 0, 0, 123000, tzinfo=UTC),
            id="instant to aware UTC",
        ),
        pytest.param(items.amount, 0, Decimal("0.00"), id="amount zero"),
        pytest.param(items.amount, 12.345, Decimal("12.35"), id="amount half up"),
        pytest.param(items.amount, 99999999.99, Decimal("99999999.99"), id="amount max"),
        pytest.param(items.amount, Decimal("1.005"), Decimal("1.01"), id="amount decimal"),
    ],
)
def test_parses(parse: items.Parser, value: Any, expected: Any) -> None:
    parsed = parse(value)
    assert parsed == expected
    assert type(parsed) is type(expected)


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        pytest.param(items.text(), 1, "must be a string", id="text not str"),
        pytest.param(items.text(2), "abc", "must be at most 2 characters", id="text too long"),
        pytest.param(items.text(non_empty=True), " ", "must not be empty", id="text blank"),
        pytest.param(items.one_of("a", "b"), "c", "must be one of a, b", id="enum unknown"),
        pytest.param(items.one_of("a", "b"), ["a"], "must be one of a, b", id="enum not str"),
        pytest.param(items.integer(), True, "must be an integer", id="bool is not int"),
        pytest.param(items.integer(), 1.5, "must be an integer", id="fraction"),
        pytest.param(items.integer(), "1", "must be an integer", id="int as text"),
        pytest.param(
            items.integer(), 2**31, "must be between -2147483648 and 2147483647", id="int4 over"
        ),
        pytest.param(items.integer(0), -1, "must be between 0 and 2147483647", id="below min"),
        pytest.param(items.boolean, 0, "must be true or false", id="zero is not false"),
        pytest.param(items.json_object, [], "must be an object", id="array"),
        pytest.param(items.identifier, "{" + ID + "}", "must be a UUID", id="uuid braces"),
        pytest.param(items.identifier, ID.replace("-", ""), "must be a UUID", id="uuid bare hex"),
        pytest.param(items.identifier, 5, "must be a UUID", id="uuid number"),
        pytest.param(
            items.country, "D1", "must be 2 letters (ISO 3166-1 alpha-2)", id="country digit"
        ),
        pytest.param(
            items.country, "D", "must be 2 letters (ISO 3166-1 alpha-2)", id="country short"
        ),
        pytest.param(
            items.instant,
            "2026-01-01T10:00:00",
            "must be an RFC 3339 date-time with an offset",
            id="instant without offset",
        ),
        pytest.param(items.amount, "1", "must be a number", id="amount text"),
        pytest.param(items.amount, True, "must be a number", id="amount bool"),
        pytest.param(
            items.amount, -0.001, "must be between 0 and 99999999.99", id="negative before rounding"
        ),
        pytest.param(
            items.amount, 99999999.995, "must be between 0 and 99999999.99", id="numeric(10,2) over"
        ),
        pytest.param(items.amount, Decimal("NaN"), "must be a finite number", id="amount NaN"),
    ],
)
def test_refuses(parse: items.Parser, value: Any, message: str) -> None:
    with pytest.raises(InvalidField) as raised:
        parse(value)
    assert (raised.value.message, raised.value.field) == (message, None)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        pytest.param({"id": None}, "id", "is required", id="null required"),
        pytest.param({"variant": 3, "city": 4}, "variant", "must be a string", id="table order"),
        pytest.param({"metadata": {"k": "\x00"}}, None, "must not contain NUL", id="NUL in json"),
        pytest.param({"extra": {"\x00": 1}}, None, "must not contain NUL", id="NUL in a key"),
        pytest.param(
            {"bounce": "no", "city": 4}, "city", "must be a string", id="table, not item order"
        ),
        pytest.param(
            {"time_on_page": 1.5, "type": "nope"}, "type", "must be one of", id="required first"
        ),
        pytest.param(
            {"metadata": {"k": Decimal("1"), "s": "\x00"}},
            None,
            "must not contain NUL",
            id="NUL beside a value JSON cannot write",
        ),
    ],
)
def test_parse_fields_names_the_first_bad_field(
    changes: dict[str, Any], field: str | None, message: str
) -> None:
    with pytest.raises(InvalidField) as raised:
        items.parse_fields(item(**changes))
    assert raised.value.field == field
    assert raised.value.message.startswith(message)


def test_parse_fields_types_values_and_columns_follow_the_kind() -> None:
    values = items.parse_fields(
        item(city="Berlin", referrer_source="ad", conversion_value=5, utm_source=None, extra=1)
    )
    assert values["id"] == uuid.UUID(ID)
    assert values["occurred_at"] == datetime(2026, 1, 1, 8, tzinfo=UTC)
    assert "utm_source" not in values and "extra" not in values
    assert items.columns_of(values, "impression") == {"city": "Berlin"}
    assert items.columns_of(values, "conversion") == {
        "referrer_source": "ad",
        "conversion_value": Decimal("5.00"),
    }


def ingest_accepts(raw: dict[str, Any]) -> Item | None:
    """The consumer's decoding of the record ingest publishes, or None when ingest refuses."""
    try:
        [record] = events.build_records({"events": [raw]}, RECEIVED)
    except BadRequest:
        return None
    return parse_item(decode(RawRecord("t", 0, 0, record.key, record.value, record.headers)))


def consumer_accepts(raw: dict[str, Any]) -> bool:
    # The envelope ingest would have built; ingest builds none for an item it refuses.
    when = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        parse_item(Event("app", str(raw.get("id")), f"app.{raw.get('type')}", when, USER, raw))
    except PoisonError:
        return False
    return True


def assert_both_sides_agree(raw: dict[str, Any]) -> None:
    decoded = ingest_accepts(raw)
    assert (decoded is not None) == consumer_accepts(raw), raw


AGREE = [
    pytest.param({}, id="minimal impression"),
    pytest.param({"type": "conversion", "conversion_value": 19.99}, id="conversion"),
    pytest.param({"type": "conversion", "referrer_source": "r" * 200}, id="referrer 200"),
    pytest.param({"referrer_source": "r" * 201}, id="referrer 201 on an impression"),
    pytest.param({"type": "conversion", "scroll_depth_percent": 101}, id="impression field bad"),
    pytest.param({"type": None}, id="no type"),
    pytest.param({"type": ""}, id="empty type"),
    pytest.param({"id": ID.replace("-", "")}, id="bare hex id"),
    pytest.param({"occurred_at": "2026-01-01"}, id="date only"),
    pytest.param({"country_code": "D"}, id="country 1 letter"),
    pytest.param({"metadata": [1]}, id="metadata array"),
    pytest.param({"conversion_context": "x"}, id="context text"),
    pytest.param({"time_on_page": 3.0}, id="integral float"),
    pytest.param({"conversion_value": -0.001}, id="tiny negative"),
    pytest.param({"page_url": "a\x00"}, id="NUL"),
    pytest.param({"future": "ok"}, id="unknown field"),
    pytest.param({"type": "conversion", "conversion_value": "9.99"}, id="decimal string"),
]


@pytest.mark.parametrize("changes", AGREE)
def test_both_sides_agree(changes: dict[str, Any]) -> None:
    assert_both_sides_agree(item(**changes))


def test_an_accepted_item_decodes_to_the_shared_typed_values() -> None:
    raw = item(type="conversion", conversion_value=12.345, conversion_window_days=7, city="x")
    decoded = ingest_accepts(raw)
    values = items.parse_fields(raw)
    assert decoded is not None
    assert (decoded.kind, decoded.id, decoded.user_id, decoded.at) == (
        "conversion",
        values["id"],
        values["user_id"],
        values["occurred_at"],
    )
    assert decoded.window_days == 7
    assert decoded.columns == {"conversion_value": Decimal("12.35")}


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from([ID, "US", "mobile", "wifi", "conversion", "9.99", "2026-01-01T00:00:00Z"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(items.KINDS),
    name=st.sampled_from([*items.REQUIRED, *items.OPTIONAL, "unknown"]),
    value=json_values,
)
def test_both_sides_agree_on_any_value(kind: str, name: str, value: Any) -> None:
    assume(not (name == "conversion_value" and isinstance(value, str)))  # see AGREE
    raw = item(type=kind)
    raw[name] = value
    assert_both_sides_agree(raw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"a": "x"}, False, id="plain"),
        pytest.param({"a": "\\u0000"}, False, id="escaped backslash then u0000 is not NUL"),
        pytest.param({"a": ["b", {"c": "d\x00"}]}, True, id="nested"),
        pytest.param({"a\x00": 1}, True, id="key"),
        pytest.param({"a": 2**70, "b": "\x00"}, True, id="beside an integer orjson refuses"),
        pytest.param({"a": 2**70}, False, id="integer orjson refuses, no NUL"),
        pytest.param("\ud800", False, id="lone surrogate"),
    ],
)
def test_contains_nul(value: Any, expected: bool) -> None:
    assert items.contains_nul(value) is expected


def _strict_instant(value: Any) -> datetime | None:
    normalised = times.strict_rfc3339(value)
    return None if normalised is None else datetime.fromisoformat(normalised)


def _instant_or_none(value: Any) -> datetime | None:
    try:
        return items.instant(value)
    except InvalidField:
        return None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-01-01T10:00:00+02:00", id="offset"),
        pytest.param("2026-01-01t10:00:00.123456789+02:00", id="nanoseconds lower t"),
        pytest.param("2026-01-01 10:00:00.5z", id="space and lower z"),
        pytest.param("2026-01-01T10:00:00.9999Z", id="truncated to ms"),
        pytest.param("0001-01-01T00:00:00+01:00", id="before year 1 in UTC"),
        pytest.param("9999-12-31T23:59:59-01:00", id="after year 9999 in UTC"),
        pytest.param("2026-02-30T00:00:00Z", id="no such day"),
        pytest.param("2026-01-01T10:00:00", id="no offset"),
        pytest.param(" 2026-01-01T10:00:00Z", id="leading space"),
        pytest.param("2026-01-01T24:00:00Z", id="hour 24"),
        pytest.param("2026-01-01T10:00:00+24:00", id="offset 24h"),
        pytest.param(20260101, id="a number"),
    ],
)
def test_instant_reads_as_strict_rfc3339(value: Any) -> None:
    assert _instant_or_none(value) == _strict_instant(value)


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(timezones=st.timezones()),
    sep=st.sampled_from("Tt "),
    digits=st.integers(0, 9),
)
def test_instant_agrees_with_strict_rfc3339_on_any_time(
    moment: datetime, sep: str, digits: int
) -> None:
    text = moment.isoformat(sep=sep, timespec="microseconds")
    head, dot, rest = text.partition(".")
    fraction, offset = rest[:6], rest[6:]
    if offset in ("", "+00:00"):
        offset = "Z"
    offset = offset[:6]  # +HH:MM, no seconds
    text = head + (dot + (fraction + "000")[:digits] if digits else "") + offset
    assert _instant_or_none(text) == _strict_instant(text)
