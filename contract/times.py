"""Provider event times -> RFC 3339 UTC (``ce_time``).

Providers' times are read leniently (a malformed or absent time falls back to the next
source, finally the receive time) because rejecting a provider's whole delivery over a
timestamp format change would stall it. First-party events are held to strict RFC 3339.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from contract.records import rfc3339

# Strict RFC 3339 with an offset (as a JSON Schema pattern, anchored), ASCII digits only.
# Years 0002-9998: with any offset the instant stays within Python's years 1-9999 in UTC.
RFC3339_PATTERN = (
    r"^(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
    r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,9})?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339_PATTERN.removeprefix("^").removesuffix("$"))
# Epoch values outside 1970..2200 are rejected as nonsense rather than overflowing.
_MAX_EPOCH_S = 7_258_118_400
# Epoch seconds as text: ASCII digits only (str.isdigit() also takes "²" and other digits
# int() refuses) and few enough that int() never meets its digit limit.
_EPOCH_TEXT = re.compile(r"[0-9]{1,15}")


def _normalise(moment: datetime) -> str | None:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return rfc3339(moment)
    except (OverflowError, ValueError):
        return None


def from_iso(value: Any) -> str | None:
    """ISO 8601 / RFC 3339 text (a time without an offset is UTC) or None."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    text = value.strip()
    if text[-1:] == "z":
        text = text[:-1] + "Z"
    try:
        return _normalise(datetime.fromisoformat(text))
    except ValueError:
        return None


def from_epoch(value: Any, *, scale: float = 1.0) -> str | None:
    """A number of seconds (``scale=1``) or milliseconds (``scale=1000``) since the epoch."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before dividing: an int too large for a float would overflow the division
    # (Python compares int with float exactly); NaN fails the comparison too.
    if not 0 <= value <= _MAX_EPOCH_S * scale:
        return None
    return rfc3339(datetime.fromtimestamp(value / scale, UTC))


def lenient(value: Any) -> str | None:
    """An ISO 8601 string or epoch seconds (number or digit string), else None."""
    if isinstance(value, str):
        text = value.strip()
        if _EPOCH_TEXT.fullmatch(text):
            return from_epoch(int(text))
        return from_iso(value)
    return from_epoch(value)


def strict_rfc3339(value: Any) -> str | None:
    """RFC 3339 date-time with an explicit offset (:data:`RFC3339_PATTERN`, then a real
    calendar day), normalised to UTC; None when invalid."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    return from_iso(value)


def first(*candidates: str | None, default: str) -> str:
    for candidate in candidates:
        if candidate is not None:
            return candidate
    return default
