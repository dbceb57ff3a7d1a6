"""The arrival time of a request in RFC 3339, formatted once per second instead of per request.

Equal to ``contract.records.rfc3339(datetime.fromtimestamp(now, UTC))`` for every ``now``:
that rounds to microseconds (half to even), then cuts to milliseconds. The date and time of
day change once a second, so only the milliseconds are formatted per call.
"""

from __future__ import annotations

from datetime import UTC, datetime

from contract.records import rfc3339

__all__ = ["received_at"]

# Within this of the next second the microseconds may round up into it: the exact path.
_CARRY = 0.999


class _Second:
    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""


_last = _Second()


def received_at(now: float) -> str:
    """``now`` (unix seconds) as ``2026-12-02T03:57:07.123Z``."""
    second = int(now)
    fraction = now - second  # exact: what datetime.fromtimestamp rounds too
    if now < 0 or fraction >= _CARRY:
        return rfc3339(datetime.fromtimestamp(now, UTC))
    last = _last
    if last.second != second:
        last.prefix = rfc3339(datetime.fromtimestamp(second, UTC))[:-4]  # without "123Z"
        last.second = second
    return f"{last.prefix}{round(fraction * 1e6) // 1000:03d}Z"
