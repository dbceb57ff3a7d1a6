"""The seam between the HTTP layer and the providers.

Each provider module exposes one :class:`Endpoint`: where it is mounted, whether it is
configured, and ``accept`` -- a pure function from the received request to the records to
publish, raising :class:`ingest.errors.IngestError` subclasses for everything it rejects.
The HTTP layer stays the same for every provider: raw body -> ``accept`` -> publish -> answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contract.records import Record
from core.settings import Settings


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
    success_status: int = 200
