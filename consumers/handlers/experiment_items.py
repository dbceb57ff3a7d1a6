"""First-party A/B testing items (SPEC 4.6) decoded into typed values ready for the database.

The ingest service validates items before publishing; this module checks them again at the
consumer boundary because a record that would fail a column constraint can never apply and
must be dead-lettered alone instead of failing its whole batch. Column names, types and
limits follow seed 002 (``impressions`` and ``conversions``).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import orjson

from consumers.errors import PoisonError
from consumers.types import Event

DEVICE_TYPES = frozenset({"desktop", "mobile", "tablet", "tv", "wearable", "bot", "other"})
CONNECTION_TYPES = frozenset(
    {"wifi", "cellular", "ethernet", "slow-2g", "2g", "3g", "4g", "5g", "offline", "other"}
)
KINDS = ("impression", "conversion")
DEFAULT_CONVERSION_TYPE = "conversion"
DEFAULT_WINDOW_DAYS = 30
INT4_MAX = 2**31 - 1
MAX_CONVERSION_VALUE = Decimal("99999999.99")  # numeric(10, 2)

Parser = Callable[[Any], Any]


class _Invalid(ValueError):
    """A field value that no column of seed 002 can hold."""


def _text(max_len: int | None = None) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid("must be a string")
        if max_len is not None and len(value) > max_len:
            raise _Invalid(f"longer than {max_len} characters")
        return value

    return parse


def _int(low: int = -(2**31), high: int = INT4_MAX) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise _Invalid("must be an integer")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise _Invalid("must be an integer")
        if not low <= value <= high:
            raise _Invalid(f"must be between {low} and {high}")
        return value

    return parse


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("must be true or false")
    return value


def _enum(allowed: frozenset[str]) -> Parser:
    def parse(value: Any) -> str:
        if value not in allowed:
            raise _Invalid(f"must be one of {', '.join(sorted(allowed))}")
        return str(value)

    return parse


def _json(value: Any) -> Any:
    # Kept as decoded JSON; the store serialises it when it writes the row.
    try:
        orjson.dumps(value)
    except TypeError:
        raise _Invalid("must be JSON") from None
    return value


def money(value: Any) -> Decimal:
    """A non-negative amount that fits numeric(10, 2), rounded to cents. Raises ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid("must be a finite number")
    try:
        # Half away from zero, as PostgreSQL rounds numeric(10, 2).
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise _Invalid("must be a number") from None
    if not Decimal(0) <= amount <= MAX_CONVERSION_VALUE:
        raise _Invalid(f"must be between 0 and {MAX_CONVERSION_VALUE}")
    return amount


# Optional columns an item may carry, in the order the INSERT statements list them.
IMPRESSION_COLUMNS: Mapping[str, Parser] = {
    "session_identifier": _text(),
    "page_url": _text(),
    "user_agent": _text(),
    "country_code": _text(2),
    "region": _text(100),
    "city": _text(100),
    "device_type": _enum(DEVICE_TYPES),
    "screen_resolution": _text(20),
    "viewport_size": _text(20),
    "connection_type": _enum(CONNECTION_TYPES),
    "language_code": _text(10),
    "time_zone": _text(50),
    "utm_source": _text(100),
    "utm_medium": _text(100),
    "utm_campaign": _text(100),
    "time_on_page": _int(),
    "scroll_depth_percent": _int(0, 100),
    "page_load_time": _int(),
    "bounce": _bool,
    "user_was_eligible": _bool,  # false: the client says this exposure must not count
    "metadata": _json,
    "user_eligibility_status": _json,
    "user_context": _json,
}

CONVERSION_COLUMNS: Mapping[str, Parser] = {
    "session_identifier": _text(),
    "details": _json,
    "country_code": _text(2),
    "device_type": _enum(DEVICE_TYPES),
    "referrer_source": _text(200),
    "utm_source": _text(100),
    "utm_medium": _text(100),
    "utm_campaign": _text(100),
    "conversion_value": money,
    "metadata": _json,
    "conversion_attribution_source": _text(),
    "conversion_context": _json,
}


@dataclass(frozen=True, slots=True)
class Item:
    """One impression or conversion. ``columns`` holds only the optional columns present."""

    kind: str
    id: uuid.UUID
    user_id: uuid.UUID
    experiment: str
    variant: str
    at: datetime
    conversion_type: str = DEFAULT_CONVERSION_TYPE
    window_days: int = DEFAULT_WINDOW_DAYS
    columns: Mapping[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> Any:
        return self.columns.get(name)


def _uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise _Invalid("must be a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _Invalid("must be a UUID string") from None


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("must be a non-empty string")
    return value


def _kind(value: Any) -> str:
    if value not in KINDS:
        raise _Invalid("must be impression or conversion")
    return str(value)


class _BadField(ValueError):
    pass


def _parse(name: str, raw: Any, parse: Parser) -> Any:
    try:
        return parse(raw)
    except _Invalid as exc:
        raise _BadField(f"field {name} {exc}") from None


def _optional(data: Mapping[str, Any], name: str, parse: Parser, default: Any) -> Any:
    raw = data.get(name)
    return default if raw is None else _parse(name, raw, parse)


def _item(data: Mapping[str, Any], event: Event) -> Item:
    kind = _parse("type", data.get("type") or event.type.removeprefix("app."), _kind)
    spec = IMPRESSION_COLUMNS if kind == "impression" else CONVERSION_COLUMNS
    item = Item(
        kind=kind,
        id=_parse("id", data.get("id", event.id), _uuid),
        user_id=_parse("user_id", data.get("user_id"), _uuid),
        experiment=_parse("experiment", data.get("experiment"), _name),
        variant=_parse("variant", data.get("variant"), _name),
        at=event.time,
        columns={
            name: _parse(name, data[name], parse)
            for name, parse in spec.items()
            if data.get(name) is not None
        },
    )
    if kind == "impression":
        return item
    return replace(
        item,
        conversion_type=_optional(data, "conversion_type", _name, DEFAULT_CONVERSION_TYPE),
        window_days=_optional(data, "conversion_window_days", _int(0), DEFAULT_WINDOW_DAYS),
    )


def parse_item(event: Event) -> Item:
    """Decode one ``ingest.experiments.v1`` event; raises PoisonError naming the bad field."""
    if not isinstance(event.data, Mapping):
        raise PoisonError("experiment event value is not a JSON object", event_id=event.id)
    try:
        return _item(event.data, event)
    except _BadField as exc:
        raise PoisonError(str(exc), event_id=event.id) from None
