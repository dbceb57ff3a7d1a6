"""Scenario 3: PostgreSQL frozen (SIGSTOP) for 30 s, and separately killed and restarted,
while events keep arriving. The consumers pause, dead-letter nothing, and catch up
completely; their paused and lag metrics show the dip and the recovery."""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

import asyncpg
import pytest

from tests.faults import dbstate, scenario
from tests.faults.conftest import needs_private_postgres
from tests.faults.harness import Child, Harness, metric, signal_all
from tests.faults.poster import post_all
from tests.faults.test_s2_broker_outage import topic_ids_of
from tests.faults.workload import build

FREEZE_S = 30.0
DOWN_S = 5.0


@dataclass(slots=True)
class Samples:
    rows: list[tuple[float, float, float]] = field(default_factory=list)  # t, paused, lag

    def between(self, start: float, end: float) -> list[tuple[float, float, float]]:
        return [r for r in self.rows if start <= r[0] <= end]


async def sample(members: list[Child], out: Samples, stop: asyncio.Event) -> None:
    while not stop.is_set():
        paused = lag = 0.0
        for member in members:
            paused += await metric(member.port, "consumer_paused") or 0.0
            lag += await metric(member.port, "consumer_lag") or 0.0
        out.rows.append((time.monotonic(), paused, lag))
        await asyncio.sleep(0.5)


@needs_private_postgres()
@pytest.mark.timeout(300)
async def test_database_outage(harness: Harness, seed: int) -> None:
    workload = build(seed, users=120, events=4000)
    await dbstate.seed(harness.database_url, workload.people, late=True)
    serve = harness.serve()
    members = [harness.consume("consumer-a"), harness.consume("consumer-b")]
    samples, stop = Samples(), asyncio.Event()
    sampler = asyncio.create_task(sample(members, samples, stop))
    posting = asyncio.create_task(
        post_all(lambda: f"http://127.0.0.1:{serve.port}", workload.requests, rate=40.0)
    )
    await asyncio.sleep(5.0)
    frozen = harness.postgres_processes()
    signal_all(frozen, signal.SIGSTOP)
    frozen_at = time.monotonic()
    await asyncio.sleep(FREEZE_S)
    signal_all(frozen, signal.SIGCONT)
    thawed_at = time.monotonic()
    await asyncio.sleep(5.0)
    signal_all(harness.postgres_processes(), signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(DOWN_S)
    assert harness.postgres is not None
    await harness.postgres.start()
    restarted_at = time.monotonic()
    posted = await posting
    settled = await scenario.settle(harness, workload)
    await asyncio.sleep(1.0)
    stop.set()
    await sampler

    freeze = samples.between(frozen_at, thawed_at)
    outage = samples.between(killed_at, restarted_at + 3)
    paused_after = next((t - frozen_at for t, p, _ in freeze if p > 0), None)
    recovered = next(
        (t - thawed_at for t, p, _ in samples.between(thawed_at, killed_at) if p == 0), None
    )
    conn = await asyncpg.connect(harness.database_url)
    try:
        dead_rows = await conn.fetchval("SELECT count(*) FROM ingest_dead_letters")
    finally:
        await conn.close()
    dlq_records = sum((await topic_ids_of(harness, "ingest.dlq.v1")).values())
    comparison = settled.comparison
    scenario.report(
        "database outage",
        {
            "seed": workload.seed,
            "events": len(workload.events),
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "paused seen after freeze (s)": paused_after and round(paused_after, 1),
            "unpaused after thaw (s)": recovered and round(recovered, 1),
            "max lag while frozen": max((lag for _, _, lag in freeze), default=None),
            "paused samples while killed": sum(p > 0 for _, p, _ in outage),
            "final paused / lag": samples.rows[-1][1:],
            "caught up after posting (s)": round(settled.caught_up_s, 1),
            "dead letters (table / topic)": (dead_rows, dlq_records),
            "duplicates": comparison.duplicates,
            "losses": comparison.losses,
        },
    )
    for member in members:
        assert member.alive(), f"{member.name} exited: {member.log.read_text()[-3000:]}"
    assert any(p > 0 for _, p, _ in freeze), "no consumer paused while PostgreSQL was frozen"
    assert max(lag for _, _, lag in freeze) > 0, "the lag gauge showed no dip"
    assert samples.rows[-1][1] == 0, "a consumer is still paused"
    assert dead_rows == 0 and dlq_records == 0
    assert posted.accepted == len(workload.requests)
    assert comparison.duplicates == 0 and comparison.losses == 0, comparison.summary()
    await scenario.check_logs(harness, workload)
