"""The limits on the wire: raw sockets against the real server (``ingest.serve``).

Request heads too large or too slow, bodies too slow, and credentials refused before a
huge declared body is sent. The timeouts are set to a fraction of a second; the tests wait
for the server's answer, they do not time it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from core.settings import Settings
from core.topics import create_topics
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h

TIMEOUT_S = 0.3
WAIT_S = 20  # a bound on waiting for the server, far above TIMEOUT_S


@dataclass(frozen=True, slots=True)
class Server:
    settings: Settings
    host: str
    port: int


@pytest.fixture(scope="module")
async def server(stack: SessionStack) -> AsyncIterator[Server]:
    settings = make_settings(None, stack.bootstrap, f"lim{uuid.uuid4().hex[:8]}.").with_overrides(
        max_header_bytes=4096, max_headers=20, header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S
    )
    await create_topics(settings)
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        host, port = url.removeprefix("http://").split(":")
        yield Server(settings, host, int(port))


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server said "connection: close" and did close


async def exchange(server: Server, *parts: bytes, pause: bool = False) -> Answer:
    """Send ``parts`` on a fresh connection (the last one withheld while ``pause``: the
    server must answer without it), then read one answer and whether the server closed."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT_S)
        closed = False
        if headers.get("connection") == "close":
            try:
                closed = await asyncio.wait_for(reader.read(1), WAIT_S) == b""
            except ConnectionResetError:
                closed = True
        return Answer(int(status_line.split()[1]), headers, body, closed)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def head(path: str, *headers: str, method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: ingest", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def test_a_well_formed_request_still_passes(server: Server) -> None:
    body = orjson.dumps({"events": [h.app_event()]})
    request = head(
        "/events",
        f"authorization: Bearer {server.settings.events_api_key}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        *[f"x-extra-{i}: {'v' * 100}" for i in range(10)],
    )
    answer = await exchange(server, request + body)
    assert answer.status == 202, answer.body
    assert "connection" not in answer.headers  # kept alive


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(
            head("/healthz", *[f"x-h{i}: 1" for i in range(21)], method="GET"), id="count"
        ),
        pytest.param(head("/healthz", "x-big: " + "a" * 5000, method="GET"), id="one big header"),
        pytest.param(head("/healthz?" + "q" * 5000, method="GET"), id="long request line"),
        pytest.param(
            head("/healthz", *[f"x-h{i}: {'b' * 300}" for i in range(15)], method="GET"),
            id="many medium headers",
        ),
    ],
)
async def test_oversize_head_is_431_and_closes(server: Server, request_head: bytes) -> None:
    answer = await exchange(server, request_head)
    assert answer.status == 431
    assert orjson.loads(answer.body)["error"] == "headers_too_large"
    assert answer.closed


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((), id="idle connection"),
        pytest.param((b"POST /events HTTP/1.1\r\nhost: in",), id="head stalls midway"),
    ],
)
async def test_slow_head_is_408_and_closes(server: Server, parts: tuple[bytes, ...]) -> None:
    answer = await exchange(server, *parts)
    assert answer.status == 408
    assert orjson.loads(answer.body)["error"] == "request_timeout"
    assert answer.closed


async def _refusals(server: Server) -> dict[str, float]:
    """ingest_head_refusals_total by its reason label, from the server's /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://{server.host}:{server.port}/metrics")).text
    found = re.findall(r"^ingest_head_refusals_total\{(.*)\} (\S+)$", text, re.MULTILINE)
    return {re.search(r'reason="(\w+)"', labels)[1]: float(value) for labels, value in found}  # type: ignore[index]


async def test_head_refusals_are_counted(server: Server) -> None:
    before = await _refusals(server)
    assert (await exchange(server, head("/healthz", "x-big: " + "a" * 5000))).status == 431
    assert (await exchange(server)).status == 408
    after = await _refusals(server)

    for reason in ("headers_too_large", "request_timeout"):
        assert after[reason] >= before.get(reason, 0) + 1, reason


async def test_slow_body_is_408_and_closes(server: Server) -> None:
    request = head(
        "/events",
        f"authorization: Bearer {server.settings.events_api_key}",
        "content-length: 100",
    )
    answer = await exchange(server, request, b'{"events": [')
    assert answer.status == 408
    assert orjson.loads(answer.body)["error"] == "request_timeout"
    assert answer.closed


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/events", ("authorization: Bearer wrong",), id="events key"),
        pytest.param("/webhooks/revenuecat", ("authorization: nope",), id="revenuecat"),
        pytest.param("/webhooks/klaviyo/flow/guess", (), id="flow token"),
    ],
)
async def test_bad_credentials_answered_without_the_body(
    server: Server, path: str, headers: tuple[str, ...]
) -> None:
    # 5 MiB declared, not a byte of it sent: the answer cannot have waited for it.
    request = head(path, *headers, f"content-length: {server.settings.max_body_bytes}")
    answer = await exchange(server, request)
    assert answer.status == 401
    assert answer.headers["connection"] == "close"
    assert answer.closed


async def test_expect_100_continue_is_refused_before_the_upload(server: Server) -> None:
    request = head(
        "/events", "authorization: Bearer wrong", "expect: 100-continue", "content-length: 5000000"
    )
    answer = await exchange(server, request)
    assert answer.status == 401  # not "100 Continue": the client never uploads
