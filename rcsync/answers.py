"""What one answer of ``POST /subscribers/{app_user_id}/attributes`` means (pure).

RevenueCat's API v1 documents 200 (the attributes were saved) and 400 with ``code`` 7263 and
``attribute_errors`` naming each attribute it could not save, and why; the others it saved.
Rate limiting answers 429 with ``Retry-After`` (seconds) and the same wait in the body's
``backoff_ms``. So:

- 2xx: done, every attribute taken;
- 429: wait as long as RevenueCat says (the longer of the two), then call again;
- 5xx, 408, 409: RevenueCat's trouble: back off and call again;
- 401, 403: our key's trouble, the same for every customer: back off and call again (and
  alert), rather than skip every customer until someone fixes the Secret;
- any other 4xx: permanent for this call: the attributes ``attribute_errors`` names (all of
  them when it names none) are refused, the rest taken; never retried.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from rcsync.model import Settled

# Outcomes of one call, the label of rc_sync_calls_total.
OK = "ok"
REFUSED = "refused"
RATE_LIMITED = "rate_limited"
TRANSIENT = "transient"  # 5xx, 408, 409
UNAUTHORIZED = "unauthorized"  # 401, 403
TIMEOUT = "timeout"
TRANSPORT = "transport_error"
OUTCOMES = (OK, REFUSED, RATE_LIMITED, TRANSIENT, UNAUTHORIZED, TIMEOUT, TRANSPORT)

DEFAULT_RETRY_AFTER_S = 1.0  # a 429 that says nothing: RevenueCat's documented example


@dataclass(frozen=True, slots=True)
class Verdict:
    """One answer judged: ``settled`` when the call is over, else ``wait_s`` when RevenueCat
    said how long to wait (429), else back off."""

    outcome: str
    settled: Settled | None = None
    wait_s: float | None = None


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def retry_after(headers: Mapping[str, str], body: bytes, now: float) -> float:
    """Seconds a 429 asks for: the ``Retry-After`` header (seconds or an HTTP date, ``now``
    being the epoch seconds it is compared with) or the body's ``backoff_ms``, the longer."""
    waits = []
    header = headers.get("retry-after", "").strip()
    if header:
        try:
            waits.append(float(header))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                waits.append(parsedate_to_datetime(header).timestamp() - now)
    payload = _json(body)
    if isinstance(payload, Mapping):
        backoff = payload.get("backoff_ms")
        if isinstance(backoff, int | float) and not isinstance(backoff, bool):
            waits.append(backoff / 1000.0)
    usable = [w for w in waits if math.isfinite(w)]
    return max(0.0, *usable) if usable else DEFAULT_RETRY_AFTER_S


def refusals(body: bytes, sent: Sequence[str], status: int) -> dict[str, str]:
    """attribute -> reason for a permanent refusal: those ``attribute_errors`` names, else
    every attribute sent, with the answer's ``message``."""
    payload = _json(body)
    message = f"HTTP {status}"
    named: dict[str, str] = {}
    if isinstance(payload, Mapping):
        if isinstance(payload.get("message"), str):
            message = f"HTTP {status}: {payload['message']}"
        errors = payload.get("attribute_errors")
        for error in errors if isinstance(errors, list) else ():
            if isinstance(error, Mapping) and error.get("key_name") in sent:
                named[str(error["key_name"])] = str(error.get("message") or message)
    return named or dict.fromkeys(sent, message)


def judge(
    status: int, headers: Mapping[str, str], body: bytes, sent: Sequence[str], now: float
) -> Verdict:
    """``headers`` with lower-cased names, as httpx gives them."""
    if 200 <= status < 300:
        return Verdict(OK, Settled(status, tuple(sent)))
    if status == 429:
        return Verdict(RATE_LIMITED, wait_s=retry_after(headers, body, now))
    if status in (401, 403):
        return Verdict(UNAUTHORIZED)
    if status >= 500 or status in (408, 409):
        return Verdict(TRANSIENT)
    refused = refusals(body, sent, status)
    accepted = tuple(key for key in sent if key not in refused)
    return Verdict(REFUSED, Settled(status, accepted, refused))
