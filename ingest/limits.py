"""How much the process takes on at once: requests in flight and the body bytes they hold.

Every webhook request enters :class:`Admission` once its credentials passed and before its
body is read. Beyond ``MAX_CONCURRENT_REQUESTS`` requests, or when its body would take the
bytes held by all requests over ``MAX_INFLIGHT_BYTES``, it is answered 503 + ``Retry-After``
(the provider retries) instead of growing the process towards its memory limit. A declared
``Content-Length`` is reserved up front; a chunked body reserves as it grows. Bytes stay
reserved until the request is answered: the body, its decoded value and its records live
that long.

The counters are only touched on the event loop, so they need no lock.
"""

from __future__ import annotations

from types import TracebackType

from ingest.errors import Overloaded


class Admission:
    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def enter(self, declared: int | None = None) -> Ticket:
        """One request's place, to be used as ``with admission.enter(n) as ticket``;
        raises :class:`Overloaded` when there is none."""
        if self.requests >= self.max_requests:
            raise Overloaded(f"over {self.max_requests} requests in flight")
        ticket = Ticket(self)
        if declared:
            ticket.cover(declared)
        self.requests += 1
        return ticket


class Ticket:
    """The place and the bytes one request holds, given back when the ``with`` ends."""

    __slots__ = ("_admission", "held")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.held = 0

    def cover(self, size: int) -> None:
        """Hold at least ``size`` bytes; raises :class:`Overloaded` over the budget."""
        need = size - self.held
        if need <= 0:
            return
        admission = self._admission
        if admission.bytes + need > admission.max_bytes:
            raise Overloaded(f"over the in-flight budget of {admission.max_bytes} body bytes")
        admission.bytes += need
        self.held = size

    def __enter__(self) -> Ticket:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._admission.requests -= 1
        self._admission.bytes -= self.held
