"""Scenario 6: replaying every topic from offset 0 is safe — the operator's recovery path
(docs/operating.md, "Rebuilding from the topics").

A fresh consumer group reads every topic from the beginning. Against the same database it
changes nothing (every event is a duplicate); against an empty, migrated database (with the
same users seeded) it rebuilds the state the oracle predicts, equal to the original.
"""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contract.topics import topic_name
from core import migrate
from tests.faults import dbstate, scenario
from tests.faults.harness import Harness, fresh_database
from tests.faults.oracle import Expected
from tests.faults.poster import post_all
from tests.faults.workload import Person, build

LAST: dict[str, object] = {}
STREAMS = ("revenuecat", "klaviyo", "kit", "experiments")
COUNTS = (
    "SELECT (SELECT count(*) FROM ingest_inbox), (SELECT count(*) FROM ingest_pending),"
    " (SELECT count(*) FROM ingest_skipped), (SELECT count(*) FROM impressions),"
    " (SELECT count(*) FROM conversions), (SELECT count(*) FROM user_klaviyo_profiles)"
)


async def group_done(harness: Harness, group: str) -> bool:
    """Has ``group`` committed the end of every partition of every topic?"""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=harness.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, not only subscribed ones
        tps = []
        for stream in STREAMS:
            topic = topic_name(harness.prefix, stream)
            tps += [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps)
        behind = [(tp.topic, tp.partition, await consumer.committed(tp), ends[tp]) for tp in tps]
        LAST[group] = behind
        return bool(tps) and all(end == 0 or (done or 0) >= end for _, _, done, end in behind)
    finally:
        await consumer.stop()


async def replay(harness: Harness, group: str, database_url: str, timeout: float = 120) -> float:
    """Run `ingester consume` in a fresh group until it has read everything; seconds taken."""
    started = time.monotonic()
    member = harness.consume(f"replay-{group}", CONSUMER_GROUP=group, DATABASE_URL=database_url)
    try:
        while not await group_done(harness, group):
            assert member.alive(), member.log.read_text()[-2000:]
            assert time.monotonic() - started < timeout, (
                f"the replay did not finish: {LAST.get(group)} {member.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.5)
        return time.monotonic() - started
    finally:
        harness.stop(member)


async def snapshot(dsn: str, people: list[Person]) -> tuple[Expected, tuple[int, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        counts = await conn.fetchrow(COUNTS)
        assert counts is not None
        return await dbstate.read(conn, people), tuple(counts)
    finally:
        await conn.close()


@pytest.mark.timeout(300)
async def test_replay_from_offset_zero(harness: Harness, seed: int) -> None:
    workload = build(seed, users=100, events=2500)
    await dbstate.seed(harness.database_url, workload.people, late=True)
    serve = harness.serve()
    member = harness.consume("consumer")
    posted = await post_all(lambda: f"http://127.0.0.1:{serve.port}", workload.requests, rate=80.0)
    settled = await scenario.settle(harness, workload)
    assert settled.comparison.losses == 0 and settled.comparison.duplicates == 0
    harness.kill(member, signal.SIGTERM)
    member.proc.wait(timeout=30)
    before, counts_before = await snapshot(harness.database_url, workload.people)

    same_s = await replay(harness, "faults-replay-same", harness.database_url)
    after, counts_after = await snapshot(harness.database_url, workload.people)
    unchanged = dbstate.compare(before, after)

    empty = await fresh_database(harness.database_url, harness.prefix.rstrip(".") + "_rebuilt")
    await migrate.migrate(empty, migrate.default_dir())
    await dbstate.seed(empty, workload.people, late=True)
    rebuild_s = await replay(harness, "faults-replay-empty", empty)
    retry = harness.cli("pending", "retry", DATABASE_URL=empty)
    assert retry.returncode == 0, retry.stderr
    rebuilt, counts_rebuilt = await snapshot(empty, workload.people)
    versus_oracle = dbstate.compare(settled.expected, rebuilt)
    versus_original = dbstate.compare(before, rebuilt)
    scenario.report(
        "replay from offset 0",
        {
            "seed": workload.seed,
            "events": len(workload.events),
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "replay into the same database (s)": round(same_s, 1),
            "rows changed by it": unchanged.losses + unchanged.duplicates,
            "counts before / after (inbox, pending, skipped, impressions, conversions, profiles)": (
                counts_before,
                counts_after,
            ),
            "rebuild into an empty database (s)": round(rebuild_s, 1),
            "rebuilt vs oracle (duplicates, losses)": (
                versus_oracle.duplicates,
                versus_oracle.losses,
            ),
            "rebuilt vs original": versus_original.summary(),
        },
    )
    assert unchanged.losses == 0 and unchanged.duplicates == 0, unchanged.summary()
    assert counts_after == counts_before
    assert versus_oracle.losses == 0 and versus_oracle.duplicates == 0, versus_oracle.summary()
    assert versus_original.losses == 0 and versus_original.duplicates == 0
    assert counts_rebuilt[1:] == counts_before[1:]
    await scenario.check_logs(harness, workload)
