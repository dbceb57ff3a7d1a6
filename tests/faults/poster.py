"""Posting a workload the way providers do: bounded concurrency, a steady pace, and retries
of every answer that is not 2xx (503 + Retry-After, a refused connection) until accepted."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from tests.faults.workload import Request

CLIENT_TIMEOUT_S = 15.0  # bounds a hung request; the server's own limit is much lower


@dataclass(slots=True)
class Outcome:
    request: Request
    # (status or 0 for no answer, seconds, Retry-After present, started at time.monotonic())
    attempts: list[tuple[int, float, bool, float]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return bool(self.attempts) and 200 <= self.attempts[-1][0] < 300


@dataclass(slots=True)
class Posted:
    outcomes: list[Outcome]
    seconds: float

    def statuses(self) -> Counter[int]:
        return Counter(a[0] for o in self.outcomes for a in o.attempts)

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)


async def post_all(
    base_url: Callable[[], str],
    requests: Sequence[Request],
    *,
    rate: float,
    concurrency: int = 8,
    retry_until: float = 120.0,
    progress: Callable[[int], None] | None = None,
) -> Posted:
    """Post every request at about ``rate`` per second; a request not yet accepted is
    retried (re-signed) for up to ``retry_until`` seconds. ``base_url`` is read per attempt,
    so a restarted server on another port is found."""
    queue: asyncio.Queue[Outcome] = asyncio.Queue()
    outcomes = [Outcome(r) for r in requests]
    for outcome in outcomes:
        queue.put_nowait(outcome)
    started = time.monotonic()
    sent = 0
    pace = asyncio.Lock()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while True:
            try:
                outcome = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            async with pace:
                due = started + sent / rate
                sent += 1
                if progress is not None:
                    progress(sent)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            deadline = time.monotonic() + retry_until
            while True:
                status, retry_after = await _attempt(client, base_url(), outcome)
                if 200 <= status < 300 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(min(retry_after, 1.0) if retry_after else 0.2)
            del status

    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return Posted(outcomes, time.monotonic() - started)


async def _attempt(client: httpx.AsyncClient, base: str, outcome: Outcome) -> tuple[int, float]:
    request = outcome.request
    began = time.monotonic()
    try:
        response = await client.post(
            base + request.path, content=request.body, headers=request.signed()
        )
    except httpx.HTTPError:
        outcome.attempts.append((0, time.monotonic() - began, False, began))
        return 0, 0.2
    retry_after = response.headers.get("Retry-After")
    outcome.attempts.append(
        (response.status_code, time.monotonic() - began, bool(retry_after), began)
    )
    if response.status_code in (400, 401, 404, 413):
        raise AssertionError(
            f"{request.path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.status_code, float(retry_after or 0)
