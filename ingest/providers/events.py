"""First-party A/B testing events (SPEC 4.6): 1..500 impressions and conversions per request.

Every item is validated against the ``impressions`` / ``conversions`` columns of seed 002
(types, varchar lengths, check constraints, pinned enum values) before anything is
published: a batch with one invalid item is rejected whole, naming the item and the field.
Fields the table below does not know are passed through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ingest import fields, times
from ingest.endpoint import Endpoint, Incoming
from ingest.errors import BadCredentials, BadRequest, NotConfigured
from ingest.records import SOURCE_APP, Record, cloudevent
from ingest.verify import equal, header_bytes, require_header
from ingester.settings import Settings

MAX_EVENTS = 500
TYPES = ("impression", "conversion")
DEVICE_TYPES = ("desktop", "mobile", "tablet", "tv", "wearable", "bot", "other")
CONNECTION_TYPES = (
    "wifi", "cellular", "ethernet", "slow-2g", "2g", "3g", "4g", "5g", "offline", "other",
)  # fmt: skip
INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
NUMERIC_10_2_MAX = 99_999_999.99

# A check returns None when the value is acceptable, else what is wrong with it.
Check = Callable[[Any], str | None]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")


def _uuid(value: Any) -> str | None:
    return None if isinstance(value, str) and _UUID.fullmatch(value) else "must be a UUID"


def _text(max_length: int | None = None, *, non_empty: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return "must be a string"
        if non_empty and not value.strip():
            return "must not be empty"
        if max_length is not None and len(value) > max_length:
            return f"must be at most {max_length} characters"
        return None

    return check


def _one_of(*allowed: str) -> Check:
    message = "must be one of " + ", ".join(allowed)
    return lambda value: None if isinstance(value, str) and value in allowed else message


def _int(minimum: int = INT4_MIN, maximum: int = INT4_MAX) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if not minimum <= value <= maximum:
            return f"must be between {minimum} and {maximum}"
        return None

    return check


def _amount(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if not 0 <= value <= NUMERIC_10_2_MAX:
        return f"must be between 0 and {NUMERIC_10_2_MAX}"
    return None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def _country(value: Any) -> str | None:
    ok = isinstance(value, str) and _COUNTRY.fullmatch(value)
    return None if ok else "must be 2 letters (ISO 3166-1 alpha-2)"


def _time(value: Any) -> str | None:
    ok = times.strict_rfc3339(value) is not None
    return None if ok else "must be an RFC 3339 date-time with an offset"


REQUIRED: Mapping[str, Check] = {
    "id": _uuid,
    "type": _one_of(*TYPES),
    "user_id": _uuid,
    "experiment": _text(non_empty=True),
    "variant": _text(non_empty=True),
    "occurred_at": _time,
}

# The optional columns of impressions and conversions (seed 002); null means absent.
OPTIONAL: Mapping[str, Check] = {
    "session_identifier": _text(),
    "page_url": _text(),
    "user_agent": _text(),
    "country_code": _country,
    "region": _text(100),
    "city": _text(100),
    "device_type": _one_of(*DEVICE_TYPES),
    "screen_resolution": _text(20),
    "viewport_size": _text(20),
    "connection_type": _one_of(*CONNECTION_TYPES),
    "language_code": _text(10),
    "time_zone": _text(50),
    "referrer_source": _text(200),
    "utm_source": _text(100),
    "utm_medium": _text(100),
    "utm_campaign": _text(100),
    "time_on_page": _int(),
    "scroll_depth_percent": _int(0, 100),
    "page_load_time": _int(),
    "bounce": _bool,
    "user_was_eligible": _bool,
    "metadata": _object,
    "user_eligibility_status": _object,
    "user_context": _object,
    "conversion_type": _text(non_empty=True),
    "conversion_value": _amount,
    "conversion_window_days": _int(0),
    "conversion_attribution_source": _text(),
    "conversion_context": _object,
    "details": _object,
}


def validate_item(item: Any, index: int) -> dict[str, Any]:
    """The item when valid; else BadRequest naming ``events[index].field``."""
    path = f"events[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{path}: must be an object")
    for name, check in REQUIRED.items():
        if name not in item or item[name] is None:
            raise BadRequest(f"{path}.{name}: is required")
        problem = check(item[name])
        if problem is not None:
            raise BadRequest(f"{path}.{name}: {problem}")
    for name, check in OPTIONAL.items():
        value = item.get(name)
        if value is not None and (problem := check(value)) is not None:
            raise BadRequest(f"{path}.{name}: {problem}")
    return item


def verify(headers: Mapping[str, str], *, api_key: str) -> None:
    given = require_header(headers, "Authorization")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not equal(header_bytes(key.strip()), api_key.encode()):
        raise BadCredentials("Authorization must be 'Bearer <EVENTS_API_KEY>'")


def build_records(body: dict[str, Any], received_at: str) -> list[Record]:
    items = fields.require_list(body.get("events"), "events", minimum=1, maximum=MAX_EVENTS)
    valid = [validate_item(item, index) for index, item in enumerate(items)]
    records = []
    for index, item in enumerate(valid):
        value = fields.dumps(item)
        # PostgreSQL text and jsonb cannot hold NUL; better a 400 now than a dead letter later.
        if b"\\u0000" in value:
            raise BadRequest(f"events[{index}]: must not contain NUL characters")
        records.append(
            cloudevent(
                source=SOURCE_APP,
                event_id=item["id"].lower(),
                event_type=f"app.{item['type']}",
                time=times.first(times.strict_rfc3339(item["occurred_at"]), default=received_at),
                partition_key=item["user_id"].lower(),
                value=value,
                received_at=received_at,
            )
        )
    return records


def accept(settings: Settings, incoming: Incoming) -> list[Record]:
    if settings.events_api_key is None:
        raise NotConfigured("first-party events are not configured")
    verify(incoming.headers, api_key=settings.events_api_key)
    return build_records(fields.parse_object(incoming.raw), incoming.received_at)


ENDPOINT = Endpoint(
    name="events",
    path="/events",
    summary="First-party impressions and conversions (1..500), one record each on "
    "ingest.experiments.v1",
    security="Authorization: Bearer <EVENTS_API_KEY>",
    enabled=lambda s: s.events_api_key is not None,
    accept=accept,
    success_status=202,
)
