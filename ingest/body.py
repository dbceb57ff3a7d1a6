"""Reading a request body under ``MAX_BODY_BYTES``, the in-flight budget and ``BODY_TIMEOUT_S``,
without buffering more than the limit."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from ingest.errors import BadRequest, PayloadTooLarge, RequestTimeout
from ingest.limits import Ticket


def declared_length(headers: Mapping[str, str], limit: int) -> int | None:
    """The ``Content-Length`` (None when absent: a chunked body); PayloadTooLarge over
    ``limit``, so an oversize body is refused before a byte of it is read."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    # ASCII digits only: int() would also take "+5", " 5", "5_000" and non-ASCII digits.
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
        raise BadRequest("Content-Length is not a number")
    size = int(declared)
    if size > limit:
        raise PayloadTooLarge(f"body of {size} bytes is over the limit of {limit}")
    return size


async def read_limited(receive: Receive, limit: int, ticket: Ticket, timeout_s: float) -> bytes:
    """The whole body from the ASGI ``receive``, or PayloadTooLarge as soon as the streamed
    size passes ``limit`` (the rest is never read), Overloaded when it outgrows the in-flight
    budget, RequestTimeout when it has not all arrived ``timeout_s`` after the headers, and
    ClientDisconnect when the client went away first."""
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise ClientDisconnect()
                chunk: bytes = message.get("body", b"")
                if chunk:
                    received += len(chunk)
                    if received > limit:
                        raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
                    ticket.cover(received)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
