"""Scenario 5: a rolling restart under load.

SIGTERM to ingest mid-stream: the requests it had in hand complete, it exits 0, and its
replacement on the same port takes the rest (clients retry a refused connection, as
providers do). SIGTERM to one of two consumers: it finishes its batch, commits, leaves the
group and exits 0; the other takes over its partitions. Nothing is lost or applied twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import httpx
import pytest

from core.devstack import free_port
from tests.faults import dbstate, scenario
from tests.faults.harness import Child, Harness
from tests.faults.poster import CLIENT_TIMEOUT_S, post_all
from tests.faults.workload import Request, build

HELD = 6  # requests made to wait for Kafka while SIGTERM arrives


@dataclass(frozen=True, slots=True)
class Held:
    term_at: float
    statuses: list[int]


async def terminate_with_requests_in_hand(
    harness: Harness, serve: Child, requests: list[Request]
) -> Held:
    """SIGTERM ingest while it holds requests: with the broker frozen for a moment, requests
    (re-posts of workload requests, so the oracle is unchanged) wait for Kafka's ack inside
    ingest when the signal arrives. With a real broker only the stream's own timing does."""
    if harness.broker is None:
        harness.kill(serve, signal.SIGTERM)
        return Held(time.monotonic(), [])
    base = f"http://127.0.0.1:{serve.port}"
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S) as client:
        harness.kill_pid(harness.broker_pid(), signal.SIGSTOP)
        try:
            sending = [
                asyncio.create_task(client.post(base + r.path, content=r.body, headers=r.signed()))
                for r in requests
            ]
            await asyncio.sleep(0.5)  # received, waiting for the acknowledgement
            harness.kill(serve, signal.SIGTERM)
            term_at = time.monotonic()
            await asyncio.sleep(0.3)
        finally:
            harness.kill_pid(harness.broker_pid(), signal.SIGCONT)
        answers = await asyncio.gather(*sending, return_exceptions=True)
    return Held(term_at, [a.status_code if isinstance(a, httpx.Response) else 0 for a in answers])


@pytest.mark.timeout(240)
async def test_rolling_restart(harness: Harness, seed: int) -> None:
    workload = build(seed, users=150, events=4000)
    await dbstate.seed(harness.database_url, workload.people, late=True)
    port = free_port()
    serve = harness.serve(port=port)
    members = [harness.consume("consumer-a"), harness.consume("consumer-b")]
    posting = asyncio.create_task(
        post_all(lambda: f"http://127.0.0.1:{port}", workload.requests, rate=50.0)
    )
    await asyncio.sleep(5.0)
    held = await terminate_with_requests_in_hand(harness, serve, workload.requests[:HELD])
    term_at = held.term_at
    serve_code = await asyncio.to_thread(serve.proc.wait, 30)
    serve_gone_s = time.monotonic() - term_at
    replacement = harness.serve(name="serve-2", port=port)
    await asyncio.sleep(5.0)
    leaving = members[0]
    harness.kill(leaving, signal.SIGTERM)
    left_at = time.monotonic()
    consumer_code = await asyncio.to_thread(leaving.proc.wait, 30)
    consumer_gone_s = time.monotonic() - left_at
    posted = await posting
    settled = await scenario.settle(harness, workload)

    attempts = [a for o in posted.outcomes for a in o.attempts]
    # Requests the old server had in hand: sent before SIGTERM, answered after it.
    in_hand = [a for a in attempts if a[3] < term_at < a[3] + a[1] and a[0] != 0]
    refused_before = [a for a in attempts if a[0] == 0 and a[3] + 0.05 < term_at]
    statuses = posted.statuses()
    comparison = settled.comparison
    leaving_log = leaving.log.read_text()
    scenario.report(
        "rolling restart",
        {
            "seed": workload.seed,
            "events": len(workload.events),
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "answers (0 = refused, retried)": dict(statuses),
            "in hand at SIGTERM (stream / held)": (len(in_hand), len(held.statuses)),
            "held requests' answers": held.statuses,
            "ingest exit code / seconds": (serve_code, round(serve_gone_s, 2)),
            "consumer exit code / seconds": (consumer_code, round(consumer_gone_s, 2)),
            "caught up after posting (s)": round(settled.caught_up_s, 1),
            "duplicates": comparison.duplicates,
            "losses": comparison.losses,
        },
    )
    assert serve_code == 0 and consumer_code == 0
    assert all(200 <= a[0] < 300 for a in in_hand), in_hand
    assert all(200 <= status < 300 for status in held.statuses), held.statuses
    assert not refused_before, refused_before[:3]
    assert set(statuses) <= {0, 200, 202, 503}, statuses
    assert posted.accepted == len(workload.requests)
    assert replacement.alive() and members[1].alive()
    assert "Traceback" not in leaving_log, leaving_log[-2000:]
    assert comparison.duplicates == 0 and comparison.losses == 0, comparison.summary()
    await scenario.check_logs(harness, workload)
