"""Typed value parsers for the first-party item table (:mod:`contract.items`), each declared
with the JSON Schema of exactly the values it accepts.

A parser takes a decoded JSON value and returns the typed value (str, int, bool, Decimal,
uuid.UUID, aware datetime, JSON object) or raises :class:`InvalidField` saying what is wrong.
Its schema (:func:`schema_of`) is declared where the parser is built, from the same bounds,
so ``/openapi.json`` and ``docs/asyncapi.yaml`` say what the parsers check. Strings of the
table never hold U+0000 (PostgreSQL cannot store it), so every string schema says so too.
The schemas refer to the shared ones of :data:`SHARED` as ``#/components/schemas/<name>``,
where both OpenAPI 3.1 and AsyncAPI 3 keep them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from contract import times

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
MAX_AMOUNT = Decimal("99999999.99")  # numeric(10, 2)
_CENT = Decimal("0.01")

UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_UUID = re.compile(UUID_PATTERN[1:-1])
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_RFC3339 = times._RFC3339  # the pattern strict_rfc3339 checks, shared

# What str.isspace() (and so str.strip()) treats as white space, as a regex class: a string
# is blank when it holds nothing else. Written out, so every regex dialect reads it alike.
SPACE_CLASS = (
    r"[\t\n\u000b\u000c\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
    r"\u205f\u3000]"
)
BLANK_PATTERN = f"^{SPACE_CLASS}*$"
NO_NUL_PATTERN = "^[^\\u0000]*$"

Parser = Callable[[Any], Any]
Schema = dict[str, Any]
_SCHEMAS: dict[Parser, Schema] = {}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# Any JSON value without U+0000 in a string or key. Numbers are bounded as the JSON decoder
# reads them (a larger one is infinity, which it refuses); integers beyond 64 bits become
# floats. Nesting is bounded too (ingest.fields.MAX_DEPTH), which a schema cannot say.
_DOUBLE_MAX = 1.7976931348623157e308
SHARED: Mapping[str, Schema] = {
    "Text": {"type": "string", "pattern": NO_NUL_PATTERN},
    "JsonValue": {
        "anyOf": [
            {"type": ["null", "boolean"]},
            {"type": "number", "minimum": -_DOUBLE_MAX, "maximum": _DOUBLE_MAX},
            ref("Text"),
            {"type": "array", "items": ref("JsonValue")},
            ref("JsonObject"),
        ]
    },
    "JsonObject": {
        "type": "object",
        "propertyNames": ref("Text"),
        "additionalProperties": ref("JsonValue"),
    },
}


P = TypeVar("P", bound=Parser)


def described(schema: Schema) -> Callable[[P], P]:
    """Declare the JSON Schema of what ``parse`` accepts, where it is defined."""

    def declare(parse: P) -> P:
        _SCHEMAS[parse] = schema
        return parse

    return declare


def schema_of(parse: Parser) -> Schema:
    """The JSON Schema of the values ``parse`` accepts (KeyError for an undeclared one)."""
    return _SCHEMAS[parse]


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

    schema: Schema = {"type": "string", "pattern": NO_NUL_PATTERN}
    if max_length is not None:
        schema["maxLength"] = max_length
    if non_empty:
        schema["not"] = {"pattern": BLANK_PATTERN}
    return described(schema)(parse)


def one_of(*allowed: str) -> Parser:
    message = "must be one of " + ", ".join(allowed)

    def parse(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise InvalidField(message)
        return value

    return described({"type": "string", "enum": list(allowed)})(parse)


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

    return described({"type": "integer", "minimum": minimum, "maximum": maximum})(parse)


@described({"type": "boolean"})
def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidField("must be true or false")
    return value


@described(ref("JsonObject"))
def json_object(value: Any) -> dict[str, Any]:
    # Kept as decoded JSON; the consumer's store serialises it into the jsonb column.
    if not isinstance(value, dict):
        raise InvalidField("must be an object")
    return value


@described(
    {"type": "string", "format": "uuid", "pattern": UUID_PATTERN, "minLength": 36, "maxLength": 36}
)
def identifier(value: Any) -> uuid.UUID:
    """A UUID in its hyphenated text form (either case); not braces, URNs or bare hex."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidField("must be a UUID")
    return uuid.UUID(value)


@described({"type": "string", "pattern": "^[A-Za-z]{2}$", "minLength": 2, "maxLength": 2})
def country(value: Any) -> str:
    if not isinstance(value, str) or not _COUNTRY.fullmatch(value):
        raise InvalidField("must be 2 letters (ISO 3166-1 alpha-2)")
    return value


@described({"type": "string", "format": "date-time", "pattern": times.RFC3339_PATTERN})
def instant(value: Any) -> datetime:
    """Strict RFC 3339 with an offset, as an aware UTC datetime (millisecond precision).

    Accepts exactly what :func:`contract.times.strict_rfc3339` accepts (its pattern, then a
    real calendar day) and returns the instant of its normalised text, parsed once instead
    of formatted and parsed again."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise InvalidField("must be an RFC 3339 date-time with an offset")
    text = value[:-1] + "Z" if value[-1] == "z" else value
    try:
        moment = datetime.fromisoformat(text).astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidField("must be an RFC 3339 date-time with an offset") from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@described({"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)})
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
