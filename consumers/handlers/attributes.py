"""RevenueCat subscriber attributes: merged key by key, the later ``updated_at_ms`` wins.

``user_revenue_cat_ids.revenue_cat_attributes`` is a JSON object as text (seed 001) of
``{"$email": {"value": ..., "updated_at_ms": 1700591793409.2}, ...}``. An event carries some
of the subscriber's attributes; keys it does not carry are kept, and a value older than the
stored one (by its own ``updated_at_ms``) never replaces it, whatever order events arrive in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

Attributes = dict[str, Any]


def parse_stored(text: str | None) -> Attributes:
    """The stored attributes; anything that is not a JSON object reads as none."""
    if not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def dump(attributes: Attributes) -> str:
    return orjson.dumps(attributes).decode()


def _millis(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def updated_at(entry: Any) -> float:
    """The ``updated_at_ms`` of a stored entry; entries without one lose to any update."""
    if isinstance(entry, Mapping):
        millis = _millis(entry.get("updated_at_ms"))
        if millis is not None:
            return millis
    return -math.inf


def merge(stored: Attributes, incoming: Any, event_time_ms: float) -> tuple[Attributes, bool]:
    """Merge an event's ``subscriber_attributes`` into ``stored``; returns the merged object
    and whether anything changed. An incoming entry without ``updated_at_ms`` is stamped with
    the event time; ties keep the stored value, so re-applying an event changes nothing."""
    if not isinstance(incoming, Mapping):
        return stored, False
    merged = dict(stored)
    changed = False
    for key, entry in incoming.items():
        if not isinstance(key, str) or not isinstance(entry, Mapping):
            continue
        millis = _millis(entry.get("updated_at_ms"))
        candidate = dict(entry)
        if millis is None:
            millis = event_time_ms
            candidate["updated_at_ms"] = millis
        if millis > updated_at(merged.get(key)):
            merged[key] = candidate
            changed = True
    return merged, changed
