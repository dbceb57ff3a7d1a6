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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from contract.values import (
    INT4_MAX,
    INT4_MIN,
    MAX_AMOUNT,
    SHARED,
    InvalidField,
    Parser,
    Schema,
    amount,
    boolean,
    country,
    identifier,
    instant,
    integer,
    json_object,
    one_of,
    ref,
    schema_of,
    text,
)

__all__ = [
    "CONVERSION", "IMPRESSION", "INT4_MAX", "INT4_MIN", "KINDS", "MAX_AMOUNT", "OPTIONAL",
    "REQUIRED", "SCHEMAS", "Field", "InvalidField", "Parser", "amount", "boolean", "columns_of",
    "contains_nul", "country", "identifier", "instant", "integer", "json_object", "one_of",
    "parse_fields", "text",
]  # fmt: skip

IMPRESSION, CONVERSION = "impression", "conversion"
KINDS = (IMPRESSION, CONVERSION)
DEVICE_TYPES = ("desktop", "mobile", "tablet", "tv", "wearable", "bot", "other")
CONNECTION_TYPES = (
    "wifi", "cellular", "ethernet", "slow-2g", "2g", "3g", "4g", "5g", "offline", "other",
)  # fmt: skip


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


def _stored_in(kinds: frozenset[str]) -> str:
    tables = [f"{kind}s" for kind in KINDS if kind in kinds]
    return "stored in " + " and ".join(tables) + "; null means absent"


def item_schema() -> Schema:
    """The JSON Schema of exactly the items :func:`parse_fields` accepts (the shared
    schemas it refers to are in :data:`SCHEMAS`)."""
    properties: dict[str, Schema] = {name: schema_of(parse) for name, parse in REQUIRED.items()}
    for name, field in OPTIONAL.items():
        properties[name] = {
            "anyOf": [schema_of(field.parse), {"type": "null"}],
            "description": _stored_in(field.kinds),
        }
    return {
        "type": "object",
        "description": "One first-party impression or conversion (docs/contract.md §4.6). "
        "Every known field is checked whatever the type; other fields travel on untouched.",
        "required": list(REQUIRED),
        "properties": properties,
        "propertyNames": ref("Text"),
        "additionalProperties": ref("JsonValue"),
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


# The schemas of the item and of the values it refers to, by name.
SCHEMAS: Mapping[str, Schema] = {**SHARED, "EventItem": item_schema()}
