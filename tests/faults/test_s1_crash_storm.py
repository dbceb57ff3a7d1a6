"""Scenario 1: a crash storm checked against an independent oracle.

10,000 events for 300 people across the four sources (re-posts, re-deliveries with other
bodies, out-of-order arrival, people created mid-run, SANDBOX events) go over HTTP while the
two members of one consumer group are SIGKILLed at random moments and restarted, and the
partitions rebalance between them. At the end the database equals the oracle.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from tests.faults import dbstate, scenario
from tests.faults.harness import Harness
from tests.faults.poster import post_all
from tests.faults.workload import build

EVENTS = 10_000
USERS = 300
MIN_KILLS = 15
RATE = 60.0  # requests per second: the posting lasts about a minute


@pytest.mark.timeout(420)
async def test_crash_storm(harness: Harness, seed: int) -> None:
    workload = build(seed, users=USERS, events=EVENTS)
    rng = random.Random(seed + 1)
    await dbstate.seed(harness.database_url, workload.people, late=False)
    serve = harness.serve()
    members = {name: harness.consume(name) for name in ("consumer-a", "consumer-b")}
    late_at = len(workload.requests) // 2
    late_seeded = asyncio.Event()

    def progress(sent: int) -> None:
        if sent == late_at:
            late_seeded.set()

    posting = asyncio.create_task(
        post_all(
            lambda: f"http://127.0.0.1:{serve.port}",
            workload.requests,
            rate=RATE,
            progress=progress,
        )
    )
    kills = 0
    started = time.monotonic()
    seeded_late = False
    while not posting.done() or kills < MIN_KILLS:
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        if late_seeded.is_set() and not seeded_late:
            await dbstate.seed_late(harness.database_url, workload.people)
            seeded_late = True
        name = rng.choice(sorted(members))
        harness.kill(members[name], signal.SIGKILL)
        members[name].proc.wait(timeout=10)
        kills += 1
        if rng.random() < 0.3:
            await asyncio.sleep(rng.uniform(0.5, 3.0))  # the other member takes everything
        members[name] = harness.consume(f"{name}-{kills}")
    posted = await posting
    if not seeded_late:
        await dbstate.seed_late(harness.database_url, workload.people)
    storm_s = time.monotonic() - started

    settled = await scenario.settle(harness, workload)
    lines = await scenario.check_logs(harness, workload)
    comparison = settled.comparison
    expected = settled.expected
    scenario.report(
        "crash storm",
        {
            "seed": workload.seed,
            "events": len(workload.events),
            "requests posted (incl. re-posts)": len(workload.requests),
            "requests accepted": posted.accepted,
            "answers": dict(posted.statuses()),
            "consumer SIGKILLs": kills,
            "storm seconds": round(storm_s, 1),
            "caught up after posting (s)": round(settled.caught_up_s, 1),
            "pending retry runs": settled.retries,
            "events applied / skipped / parked for good (oracle)": (
                len(workload.events) - len(expected.skipped) - len(expected.pending),
                len(expected.skipped),
                len(expected.pending),
            ),
            "rows compared": comparison.rows,
            "duplicates": comparison.duplicates,
            "losses": comparison.losses,
            "log lines scanned": lines,
        },
    )
    assert posted.accepted == len(workload.requests)
    assert kills >= MIN_KILLS
    assert comparison.duplicates == 0 and comparison.losses == 0, comparison.summary()
