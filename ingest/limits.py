"""How much the process, and each endpoint, takes on at once: requests in flight and the
body bytes they hold.

Every webhook request enters its endpoint's :class:`Admission` once its credentials passed
and before its body is read. Each endpoint's admission sits inside the process-wide one
(``MAX_CONCURRENT_REQUESTS``, ``MAX_INFLIGHT_BYTES``): a request needs room in both, or it
is answered 503 + ``Retry-After`` (the provider retries) instead of growing the process
towards its memory limit. An endpoint whose requests can reach this point without a real
credential (Kit and Klaviyo: a present, fresh, but not yet verified signature header) is
held to a share of the process (:class:`EndpointLimits`), so slow unauthenticated uploads
to it cannot take the room RevenueCat and ``/events`` need. A declared ``Content-Length``
is reserved up front; a chunked body reserves as it grows. Bytes stay reserved until the
request is answered: the body, its decoded value and its records live that long.

The counters are only touched on the event loop, so they need no lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType

from ingest.errors import Overloaded

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """What one endpoint may take, declared with the endpoint (README, "Limits and the
    order of checks"). Each is capped by the process-wide setting it narrows."""

    share: float = 1.0  # of MAX_CONCURRENT_REQUESTS and MAX_INFLIGHT_BYTES
    max_body_bytes: int | None = None  # None: MAX_BODY_BYTES
    body_timeout_s: float | None = None  # None: BODY_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Effective:
    """An endpoint's limits under the settings of one process."""

    max_requests: int
    max_bytes: int
    max_body_bytes: int
    body_timeout_s: float


def effective(
    limits: EndpointLimits,
    *,
    max_requests: int,
    max_bytes: int,
    max_body_bytes: int,
    body_timeout_s: float,
) -> Effective:
    body = min(max_body_bytes, limits.max_body_bytes or max_body_bytes)
    # Never below one body at the endpoint's cap: such a body would be refused forever.
    share_bytes = max(math.floor(max_bytes * limits.share), body)
    return Effective(
        max_requests=max(1, math.floor(max_requests * limits.share)),
        max_bytes=min(max_bytes, share_bytes),
        max_body_bytes=body,
        body_timeout_s=min(body_timeout_s, limits.body_timeout_s or body_timeout_s),
    )


class Admission:
    """Requests and body bytes in flight, bounded; ``within`` is the admission this one is
    part of (an endpoint's inside the process's), which must have room as well."""

    def __init__(self, max_requests: int, max_bytes: int, within: Admission | None = None) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0
        self.levels: tuple[Admission, ...] = (self,) if within is None else (self, *within.levels)

    def enter(self, declared: int | None = None) -> Ticket:
        """One request's place, to be used as ``with admission.enter(n) as ticket``;
        raises :class:`Overloaded` when there is none."""
        for level in self.levels:
            if level.requests >= level.max_requests:
                raise Overloaded(f"over {level.max_requests} requests in flight")
        ticket = Ticket(self.levels)
        if declared:
            ticket.cover(declared)
        for level in self.levels:
            level.requests += 1
        return ticket


class Ticket:
    """The place and the bytes one request holds, given back when the ``with`` ends."""

    __slots__ = ("_levels", "held")

    def __init__(self, levels: tuple[Admission, ...]) -> None:
        self._levels = levels
        self.held = 0

    def cover(self, size: int) -> None:
        """Hold at least ``size`` bytes; raises :class:`Overloaded` over a budget."""
        need = size - self.held
        if need <= 0:
            return
        for level in self._levels:
            if level.bytes + need > level.max_bytes:
                raise Overloaded(f"over the in-flight budget of {level.max_bytes} body bytes")
        for level in self._levels:
            level.bytes += need
        self.held = size

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for level in self._levels:
            level.requests -= 1
            level.bytes -= self.held
