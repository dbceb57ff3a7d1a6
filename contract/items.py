"""The first-party A/B testing item (docs/contract.md §4.6): the one table of its fields.

Ingest validates every item of ``POST /events`` with this table before publishing it; the
experiments consumer decodes every ``ingest.experiments.v1`` record with it into typed values.
Both sides therefore accept exactly the same items, and a column is added here once. Names,
types, varchar limits, enum values and check constraints are those of the ``impressions`` and
``conversions`` tables of seed 002 (``sql/0002_experiments_and_profiles.sql``).

A parser takes a decoded JSON value and returns the typed value (str, int, bool, Decimal,
uuid.UUID, aware datetime, JSON object) or raises :class:`InvalidField` saying what is wrong.
Every known field is checked on every item, whatever its type; ``Field.kinds`` only says which
table stores it. Fields the table does not know travel on untouched and are stored nowhere.
Consumers import this module; it imports nothing from them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

from contract import times

IMPRESSION, CONVERSION = "impression", "conversion"
KINDS = (IMPRESSION, CONVERSION)
DEVICE_TYPES = ("desktop", "mobile", "tablet", "tv", "wearable", "bot", "other")
CONNECTION_TYPES = (
    "wifi", "cellular", "ethernet", "slow-2g", "2g", "3g", "4g", "5g", "offline", "other",
)  # fmt: skip
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
MAX_AMOUNT = Decimal("99999999.99")  # numeric(10, 2)
_CENT = Decimal("0.01")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_RFC3339 = times._RFC3339  # the pattern strict_rfc3339 checks, shared

Parser = Callable[[Any], Any]


class InvalidField(ValueError):
    """A value no column of seed 002 can hold; ``field`` is None when the whole item is at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def text(max_length: int | None = None, *, non_empty: bool = False) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidField("must be a string")
        if non_empty and not value.strip():
            raise InvalidField("must not be empty")
        if max_length is not None and len(value) > max_length:
            raise InvalidField(f"must be at most {max_length} characters")
        return value

    return parse


def one_of(*allowed: str) -> Parser:
    message = "must be one of " + ", ".join(allowed)

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise InvalidField(message)
        return value

    return parse


def integer(minimum: int = INT4_MIN, maximum: int = INT4_MAX) -> Parser:
    def parse(value: Any) -> int:
        # JSON has one number type: 3.0 is the integer 3 (as in JSON Schema), 3.5 is not.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidField("must be an integer")
        if not minimum <= value <= maximum:
            raise InvalidField(f"must be between {minimum} and {maximum}")
        return value

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField("must be true or false")
    return value


def json_object(value: Any) -> dict[str, Any]:
    # Kept as decoded JSON; the consumer's store serialises it into the jsonb column.
    if not isinstance(value, dict):
        raise InvalidField("must be an object")
    return value


def identifier(value: Any) -> uuid.UUID:
    """A UUID in its hyphenated text form (either case); not braces, URNs or bare hex."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidField("must be a UUID")
    return uuid.UUID(value)


def country(value: Any) -> str:
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
        raise InvalidField("must be 2 letters (ISO 3166-1 alpha-2)")
    return value


def instant(value: Any) -> datetime:
    """Strict RFC 3339 with an offset, as an aware UTC datetime (millisecond precision).

    Accepts exactly what :func:`contract.times.strict_rfc3339` accepts and returns the
    instant of its normalised text, parsed once instead of formatted and parsed again."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40 or not _RFC3339.fullmatch(value):
        raise InvalidField("must be an RFC 3339 date-time with an offset")
    text = value[:-1] + "Z" if value[-1] == "z" else value
    try:
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidField("must be an RFC 3339 date-time with an offset") from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def amount(value: Any) -> Decimal:
    """A non-negative number that fits numeric(10, 2), rounded half away from zero to cents
    as PostgreSQL rounds it. The range is checked before rounding: -0.001 is refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidField("must be a number")
    exact = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not exact.is_finite():
        raise InvalidField("must be a finite number")
    if not 0 <= exact <= MAX_AMOUNT:
        raise InvalidField(f"must be between 0 and {MAX_AMOUNT}")
    return exact.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Field:
    parse: Parser
    kinds: frozenset[str]  # the item types whose table (impressions, conversions) stores it
    sql: str = "text"  # how the consumer casts the parsed value for its column
    default: str | None = None  # the column's DEFAULT, used when the item leaves it out


_I, _C = frozenset({IMPRESSION}), frozenset({CONVERSION})
_JSONB, _EMPTY = "text::jsonb", "'{}'::jsonb"  # JSON objects travel as text
_BOTH = _I | _C

REQUIRED: Mapping[str, Parser] = {
    "id": identifier,
    "type": one_of(*KINDS),
    "user_id": identifier,
    "experiment": text(non_empty=True),
    "variant": text(non_empty=True),
    "occurred_at": instant,
}

# The optional columns of impressions and conversions; null means absent.
OPTIONAL: Mapping[str, Field] = {
    "session_identifier": Field(text(), _BOTH),
    "page_url": Field(text(), _I),
    "user_agent": Field(text(), _I),
    "country_code": Field(country, _BOTH),
    "region": Field(text(100), _I),
    "city": Field(text(100), _I),
    "device_type": Field(one_of(*DEVICE_TYPES), _BOTH, "text::device_type_enum"),
    "screen_resolution": Field(text(20), _I),
    "viewport_size": Field(text(20), _I),
    "connection_type": Field(one_of(*CONNECTION_TYPES), _I, "text::connection_type_enum"),
    "language_code": Field(text(10), _I),
    "time_zone": Field(text(50), _I),
    "referrer_source": Field(text(200), _C),
    "utm_source": Field(text(100), _BOTH),
    "utm_medium": Field(text(100), _BOTH),
    "utm_campaign": Field(text(100), _BOTH),
    "time_on_page": Field(integer(), _I, "int4"),
    "scroll_depth_percent": Field(integer(0, 100), _I, "int4"),
    "page_load_time": Field(integer(), _I, "int4"),
    "bounce": Field(boolean, _I, "bool", "false"),
    "user_was_eligible": Field(boolean, _I, "bool"),  # false: this exposure must not count
    "metadata": Field(json_object, _BOTH, _JSONB, _EMPTY),
    "user_eligibility_status": Field(json_object, _I, _JSONB, _EMPTY),
    "user_context": Field(json_object, _I, _JSONB, _EMPTY),
    "conversion_type": Field(text(non_empty=True), _C),
    "conversion_value": Field(amount, _C, "numeric"),
    "conversion_window_days": Field(integer(0), _C, "int4"),
    "conversion_attribution_source": Field(text(), _C, default="'direct'"),
    "conversion_context": Field(json_object, _C, _JSONB, _EMPTY),
    "details": Field(json_object, _C, _JSONB),
}


def _parse(name: str, parse: Parser, value: Any) -> Any:
    try:
        return parse(value)
    except InvalidField as exc:
        raise InvalidField(exc.message, name) from None


_REQUIRED = tuple(REQUIRED.items())
_OPTIONAL_PARSERS: Mapping[str, Parser] = {name: f.parse for name, f in OPTIONAL.items()}
_STORED_BY: Mapping[str, frozenset[str]] = {
    kind: frozenset(name for name, f in OPTIONAL.items() if kind in f.kinds) for kind in KINDS
}


def parse_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The typed value of every required field and of every optional one present (not null).

    Raises InvalidField naming the first field at fault, in table order: a required field
    absent or null, or a value its parser refuses; then, with no field, an item holding NUL.
    """
    # The fields are read in the item's own order (only those present, one pass); if one is
    # refused, the item is read again in table order so the error names the same field.
    values: dict[str, Any] = {}
    try:
        for name, required in _REQUIRED:
            value = item.get(name)
            if value is None:
                raise InvalidField("is required", name)
            values[name] = required(value)
        for name, value in item.items():
            optional = _OPTIONAL_PARSERS.get(name)
            if optional is not None and value is not None:
                values[name] = optional(value)
    except InvalidField:
        _refuse_in_table_order(item)
        raise  # unreachable: the ordered pass refuses the same item
    if contains_nul(item):
        raise InvalidField("must not contain NUL characters")
    return values


def _refuse_in_table_order(item: Mapping[str, Any]) -> None:
    """Raise the InvalidField of the first field at fault in table order, if any."""
    for name, parse in REQUIRED.items():
        if item.get(name) is None:
            raise InvalidField("is required", name)
        _parse(name, parse, item[name])
    for name, field in OPTIONAL.items():
        if item.get(name) is not None:
            _parse(name, field.parse, item[name])


def columns_of(values: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The optional values that the table of ``kind`` stores."""
    stored = _STORED_BY.get(kind, frozenset())
    return {k: v for k, v in values.items() if k in stored}


_ESCAPED_NUL = b"\\u0000"  # how JSON writes U+0000 (orjson escapes it, never writes it raw)


def contains_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds U+0000 in any string or key.

    PostgreSQL text and jsonb cannot store it. Screened first by serialising the value once
    (in C): without the escape ``\\u0000`` in the JSON text there is no NUL anywhere. A hit
    (possibly an escaped backslash followed by ``u0000``) or a value orjson cannot write is
    walked with a stack, not recursion: a body may nest as deep as the JSON decoder allows.
    """
    try:
        if _ESCAPED_NUL not in orjson.dumps(value):
            return False
    except TypeError:
        pass  # not plain JSON (a Decimal, a big integer, a lone surrogate): walk it
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
