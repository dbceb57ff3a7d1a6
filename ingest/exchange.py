"""What one webhook request is read as and answered with, at the ASGI level: its headers,
its request id, the trace its records carry, and the JSON answer (README, "Limits and the
order of checks"; docs/contract.md §4)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from opentelemetry import trace
from starlette.responses import Response
from starlette.types import Send

from contract import tracecontext
from contract.headers import TRACEPARENT
from ingest.errors import IngestError

RETRY_AFTER_S = 5
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def json_response(status: int, payload: Mapping[str, Any], **headers: str) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one."""
    given = headers.get("x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


def trace_parent(headers: Mapping[str, str]) -> tracecontext.TraceParent:
    """The trace the request's records carry: the request's span when OpenTelemetry traces
    it (``ingest.serve`` adds the ASGI instrumentation when spans are exported), else the
    caller's ``traceparent`` passed on as it came (this hop makes no span nobody sees), else
    a new trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return tracecontext.TraceParent(context.trace_id, context.span_id, context.trace_flags)
    return tracecontext.parse(headers.get(TRACEPARENT)) or tracecontext.start()


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as a plain dict with lower-case names (ASGI servers lower-case
    them); of a repeated header the first value wins, as in Starlette's ``Headers``."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


_JSON = (b"content-type", b"application/json")
CLOSE = (b"connection", b"close")
REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
_RETRY_AFTER = (b"retry-after", str(RETRY_AFTER_S).encode())


class Answer:
    """A JSON answer as ASGI messages, without a Starlette ``Response``: the webhook routes
    answer thousands of times a second and need nothing else of it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
        self.status = status
        self.body = body
        self.headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]

    @classmethod
    def error(cls, error: IngestError) -> Answer:
        body = orjson.dumps({"error": error.code, "detail": error.detail})
        return (
            cls(error.status, body, _RETRY_AFTER)
            if error.status == 503
            else cls(error.status, body)
        )

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})
