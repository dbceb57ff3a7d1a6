"""The seam between the HTTP layer and the providers.

Each provider module exposes one :class:`Endpoint`: where it is mounted, ``configured`` --
what requests are checked against (a secret, a token...) read from the settings, or ``None``
when the endpoint is not configured -- ``authorize`` -- the credentials it can check before
the body is read (an ``Authorization`` value, a path token, a signed timestamp) -- and
``accept`` -- a pure function from the configuration and the received request to the records
to publish. Both raise :class:`ingest.errors.IngestError` subclasses for everything they
reject. Whether an endpoint is configured is decided once, by the request path
(:mod:`ingest.handler`), which hands the configuration to both. ``accept`` checks every
credential again (it is complete on its own); ``authorize`` lets the HTTP layer refuse a
request without reading, or holding memory for, its body:
404 unconfigured -> ``authorize`` -> size and budget -> body -> ``accept`` -> publish -> answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from contract.records import Record
from core.settings import Settings
from ingest.limits import EndpointLimits
from ingest.verify import Signing, check_path_token


@dataclass(frozen=True, slots=True)
class Head:
    """A request before its body is read."""

    headers: Mapping[str, str]  # case-insensitive, or a plain dict with lower-case names
    params: Mapping[str, str]  # path parameters
    now: float  # unix seconds when the request arrived


def no_check(config: object, head: Head) -> None:
    """For an endpoint whose every credential needs the body."""


def path_token(token: str, head: Head) -> None:
    """For an endpoint whose one credential is its ``{token}`` path segment."""
    check_path_token(head.params, token)


def configured_signing(settings: Settings, *secrets: str | None) -> Signing | None:
    """The configured ``secrets`` with the settings' tolerance; ``None`` when none is set."""
    configured = tuple(secret for secret in secrets if secret is not None)
    return Signing(configured, settings.signature_tolerance_s) if configured else None


@dataclass(frozen=True, slots=True)
class Incoming:
    """One received request, as the pure verification and record functions see it."""

    headers: Mapping[str, str]  # case-insensitive, or a plain dict with lower-case names
    params: Mapping[str, str]  # path parameters
    raw: bytes  # the exact body bytes received
    now: float  # unix seconds when the request arrived
    received_at: str  # the same moment in RFC 3339 (the ``ingest_received_at`` header)


@dataclass(frozen=True, slots=True)
class Param:
    """A request header or path segment an endpoint checks, for ``/openapi.json``."""

    name: str
    description: str
    location: Literal["header", "path"] = "header"
    required: bool = True
    pattern: str | None = None  # a JSON Schema pattern, when its form is checked


UNLIMITED = EndpointLimits()  # the process-wide limits only

C = TypeVar("C")  # what one endpoint checks requests against: a token, a Signing...


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[C]):
    name: str  # metric label and log field: revenuecat, klaviyo, klaviyo_flow, kit, ...
    path: str  # Starlette path, e.g. /webhooks/kit/legacy/{token}/{event_name}
    summary: str  # one line for /openapi.json
    security: str  # how a request proves itself, for /openapi.json
    configured: Callable[[Settings], C | None]  # None -> 404 (fail closed)
    accept: Callable[[C, Incoming], list[Record]]
    # JSON Schema of exactly the bodies ``accept`` takes (tests/unit/test_ingest_schemas.py
    # proves it both ways); below, the parameters and security scheme it checks.
    body: Mapping[str, Any]
    authorize: Callable[[C, Head], None] = no_check  # before the body is read
    success_status: int = 200
    limits: EndpointLimits = UNLIMITED  # its admission, body cap and body timeout
    params: tuple[Param, ...] = ()  # every {name} of the path, and the headers checked
    scheme: str | None = None  # a security scheme of ingest.openapi.SECURITY_SCHEMES
