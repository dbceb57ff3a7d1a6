"""The seam between the HTTP layer and the providers.

Each provider module exposes one :class:`Endpoint`: where it is mounted, whether it is
configured, ``authorize`` -- the credentials it can check before the body is read (an
``Authorization`` value, a path token, a signed timestamp) -- and ``accept`` -- a pure
function from the received request to the records to publish. Both raise
:class:`ingest.errors.IngestError` subclasses for everything they reject. ``accept`` checks
everything again (it is complete on its own); ``authorize`` lets the HTTP layer refuse a
request without reading, or holding memory for, its body:
404 unconfigured -> ``authorize`` -> size and budget -> body -> ``accept`` -> publish -> answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contract.records import Record
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Head:
    """A request before its body is read."""

    headers: Mapping[str, str]  # case-insensitive, or a plain dict with lower-case names
    params: Mapping[str, str]  # path parameters
    now: float  # unix seconds when the request arrived


def no_check(settings: Settings, head: Head) -> None:
    """For an endpoint whose every credential needs the body."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One received request, as the pure verification and record functions see it."""

    headers: Mapping[str, str]  # case-insensitive, or a plain dict with lower-case names
    params: Mapping[str, str]  # path parameters
    raw: bytes  # the exact body bytes received
    now: float  # unix seconds when the request arrived
    received_at: str  # the same moment in RFC 3339 (the ``ingest_received_at`` header)


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # metric label and log field: revenuecat, klaviyo, klaviyo_flow, kit, ...
    path: str  # Starlette path, e.g. /webhooks/kit/legacy/{token}/{event_name}
    summary: str  # one line for /openapi.json
    security: str  # how a request proves itself, for /openapi.json
    enabled: Callable[[Settings], bool]  # False -> 404 (fail closed)
    accept: Callable[[Settings, Incoming], list[Record]]
    authorize: Callable[[Settings, Head], None] = no_check  # before the body is read
    success_status: int = 200
