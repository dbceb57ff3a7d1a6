"""Reading a body from ASGI ``receive`` messages under the size, budget and time limits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from ingest.body import read_limited
from ingest.errors import Overloaded, PayloadTooLarge, RequestTimeout
from ingest.limits import Admission

Message = dict[str, Any]


def receiving(*messages: Message) -> Callable[[], Awaitable[Message]]:
    queue = list(messages)

    async def receive() -> Message:
        if not queue:
            await asyncio.Event().wait()  # a client that sends nothing more
        return queue.pop(0)

    return receive


def part(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        pytest.param([part(b"abc", False)], b"abc", id="one message"),
        pytest.param([part(b"ab", True), part(b"", True), part(b"c", False)], b"abc", id="chunks"),
        pytest.param([{"type": "http.request"}], b"", id="no body"),
    ],
)
async def test_reads_the_whole_body(messages: list[Message], expected: bytes) -> None:
    admission = Admission(10, 100)
    with admission.enter() as ticket:
        assert await read_limited(receiving(*messages), 10, ticket, 5.0) == expected
        assert ticket.held == len(expected)
    assert admission.bytes == 0


@pytest.mark.parametrize(
    ("messages", "limit", "budget", "error"),
    [
        pytest.param(
            [part(b"abc", True), {"type": "http.disconnect"}],
            10,
            100,
            ClientDisconnect,
            id="client gone",
        ),
        pytest.param([part(b"abc", True), part(b"def", False)], 5, 100, PayloadTooLarge, id="size"),
        pytest.param([part(b"abcdef", False)], 10, 5, Overloaded, id="in-flight budget"),
        pytest.param([part(b"abc", True)], 10, 100, RequestTimeout, id="stalled body"),
    ],
)
async def test_refuses(
    messages: list[Message], limit: int, budget: int, error: type[Exception]
) -> None:
    admission = Admission(10, budget)
    with pytest.raises(error), admission.enter() as ticket:
        await read_limited(receiving(*messages), limit, ticket, 0.05)
    assert admission.bytes == 0
    assert admission.requests == 0
