"""uvicorn's httptools protocol with the limits on the request head that uvicorn lacks.

httptools buffers the request line and headers in the protocol before the app is called, so
an ASGI middleware would only see them once all of them -- 16 MB, 10,000 headers -- were in
memory. Here they are counted as they are parsed:
- request line + header bytes over ``MAX_HEADER_BYTES``, or more than ``MAX_HEADERS``
  headers: 431, connection closed;
- a head not complete ``HEADER_TIMEOUT_S`` after the connection opened or the request began
  (a stalled or trickling client, an idle new connection): 408, connection closed.
The body has its own limits in the app (``MAX_BODY_BYTES``, ``BODY_TIMEOUT_S``); between
requests uvicorn's keep-alive timeout closes an idle connection.

A request refused before its body was read is answered with ``Connection: close``. Closing a
socket while the client is still sending makes the kernel reset the connection, and a reset
can destroy the answer before the client reads it; so such a close lingers (RFC 9112 9.6):
the answer is sent, the writing side shut, and what still arrives is dropped unread for at
most ``LINGER_S`` before the socket is closed.
"""

from __future__ import annotations

import asyncio
import http
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
import orjson
from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("ingest.http")
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_bytes: int
    max_count: int
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; httptools wraps it in a parser
    error, so the refusal itself travels on the protocol."""


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers while the request is unread."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpToolsProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering: asyncio.TimerHandle | None = None
        self.write = transport.write  # the hot path: no forwarding per call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering is not None or self._transport.is_closing()

    def close(self) -> None:
        transport = self._transport
        if self.is_closing() or not self._protocol.unread() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.lingering = self._protocol.loop.call_later(LINGER_S, transport.close)

    def abort(self) -> None:
        if self.lingering is not None:
            self.lingering.cancel()
        self._transport.abort()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HeadLimits]
    refusals: ClassVar[Counter | None] = None  # ingest_head_refusals_total, by status, reason

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: Refusal | None = None

    # The head deadline runs from the connection or from the first byte of each request.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        lingering = _LingeringTransport(cast(asyncio.Transport, transport), self)
        super().connection_made(lingering)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        lingering = getattr(self.transport, "lingering", None)
        if lingering is not None:
            lingering.cancel()
        super().connection_lost(exc)

    def unread(self) -> bool:
        """Whether the client may still be sending: a request head or body not all read."""
        cycle = self.cycle
        return self._refusal is not None or (cycle is not None and cycle.more_body)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        """uvicorn's, answering a refusal instead of its generic 400."""
        if self._refusal is not None or getattr(self.transport, "lingering", None) is not None:
            return  # answered and closing: the rest is not read
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._answer(self._refusal)
            else:
                self.send_400_response("Invalid HTTP request received.")

    def _count(self, size: int, headers: int) -> None:
        limits = self.limits
        self._head_bytes += size
        self._head_count += headers
        if self._head_count > limits.max_count:
            self._refuse(431, "headers_too_large", f"more than {limits.max_count} header fields")
        if self._head_bytes > limits.max_bytes:
            detail = f"request line and headers over {limits.max_bytes} bytes"
            self._refuse(431, "headers_too_large", detail)

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._refusal = Refusal(status, code, detail)
        raise _Refused(detail)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.limits.timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._refusal is None and not self.transport.is_closing():
            detail = f"the request head did not arrive within {self.limits.timeout_s:g} s"
            self._refusal = Refusal(408, "request_timeout", detail)
            self._answer(self._refusal)

    def _answer(self, refusal: Refusal) -> None:
        self._disarm()
        log.info("refused", extra={"status": refusal.status, "reason": refusal.code})
        if self.refusals is not None:
            self.refusals.labels(str(refusal.status), refusal.code).inc()
        body = orjson.dumps({"error": refusal.code, "detail": refusal.detail})
        phrase = http.HTTPStatus(refusal.status).phrase
        lines = [f"HTTP/1.1 {refusal.status} {phrase}".encode()]
        lines += [name + b": " + value for name, value in self.server_state.default_headers]
        lines += [
            b"content-type: application/json",
            b"content-length: %d" % len(body),
            b"connection: close",
        ]
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()


def limited_protocol(
    limits: HeadLimits, refusals: Counter | None = None
) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits; each
    refusal is counted in ``refusals`` (labels: status, reason)."""

    class Protocol(LimitedHttpToolsProtocol):
        pass

    Protocol.limits = limits
    Protocol.refusals = refusals
    return Protocol
