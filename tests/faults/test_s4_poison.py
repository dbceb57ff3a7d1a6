"""Scenario 4: poison among valid records.

Undecodable records (not JSON, no ce_id, a value of the wrong shape, an item field out of
range) and one record that violates a database constraint are published among valid events
posted over HTTP. Each bad one lands in the DLQ exactly once with headers naming where it
came from; every valid one applies. Once the constraint is repaired, ``ingester dlq replay``
applies the repaired record, once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.faults import dbstate, scenario
from tests.faults.harness import Harness
from tests.faults.poster import post_all
from tests.faults.workload import build, rfc3339

DLQ = "ingest.dlq.v1"
REPAIRABLE = "faults_repairable"
ADD_CONSTRAINT = (
    f"ALTER TABLE user_profiles ADD CONSTRAINT {REPAIRABLE}"
    " CHECK (kit_subscriber_id IS DISTINCT FROM '666')"
)
DROP_CONSTRAINT = f"ALTER TABLE user_profiles DROP CONSTRAINT {REPAIRABLE}"


@dataclass(frozen=True, slots=True)
class Bad:
    name: str
    stream: str
    value: bytes
    headers: list[tuple[str, bytes]]
    key: bytes = b"poison"


def headers(
    source: str, event_id: str, ce_type: str, key: str, *, drop: str = ""
) -> list[tuple[str, bytes]]:
    found = {
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": source,
        "ce_type": ce_type,
        "ce_time": rfc3339(datetime.now(UTC) - timedelta(minutes=1)),
        "ce_partitionkey": key,
        "content-type": "application/json",
    }
    return [(k, v.encode()) for k, v in found.items() if k != drop]


def bad_records(repair_email: str) -> list[Bad]:
    tag = uuid.uuid4().hex[:8]
    user = str(uuid.uuid4())
    item_id = str(uuid.uuid4())
    item: dict[str, Any] = {
        "id": item_id,
        "type": "impression",
        "user_id": user,
        "experiment": "faults-a",
        "variant": "control",
        "occurred_at": rfc3339(datetime.now(UTC)),
        "scroll_depth_percent": 150,
    }
    kit_id = f"repair-{tag}"
    kit: dict[str, Any] = {
        "id": kit_id,
        "type": "subscriber.activated",
        "created": rfc3339(datetime.now(UTC) - timedelta(minutes=1)),
        "data": {"subscriber": {"id": 666, "email_address": repair_email, "state": "active"}},
    }
    return [
        Bad(
            "not json",
            "ingest.kit.v1",
            b"{not json",
            headers("kit", f"nojson-{tag}", "kit.subscriber.activated", "x"),
        ),
        Bad(
            "no ce_id",
            "ingest.klaviyo.v1",
            b"{}",
            headers("klaviyo", "", "klaviyo.flow.profile", "x", drop="ce_id"),
        ),
        Bad(
            "not an object",
            "ingest.revenuecat.v1",
            b"[1, 2]",
            headers("revenuecat", f"array-{tag}", "revenuecat.RENEWAL", "x"),
        ),
        Bad(
            "field out of range",
            "ingest.experiments.v1",
            orjson.dumps(item),
            headers("app", item_id, "app.impression", user),
        ),
        Bad(
            "constraint",
            "ingest.kit.v1",
            orjson.dumps(kit),
            headers("kit", kit_id, "kit.subscriber.activated", repair_email),
        ),
    ]


async def publish(harness: Harness, bad: list[Bad]) -> dict[str, tuple[str, int, int]]:
    """Publish one by one, a little apart (so no batch is mostly poison); where each went."""
    producer = AIOKafkaProducer(bootstrap_servers=harness.bootstrap, acks="all")
    await producer.start()
    where = {}
    try:
        for record in bad:
            topic = harness.prefix + record.stream
            meta = await producer.send_and_wait(
                topic, record.value, key=record.key, headers=record.headers
            )
            where[record.name] = (topic, meta.partition, meta.offset)
            await asyncio.sleep(0.7)
    finally:
        await producer.stop()
    return where


async def dead_letters(harness: Harness) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=harness.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = harness.prefix + DLQ
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [{k: v.decode() for k, v in r.headers} for r in records]
        return found
    finally:
        await consumer.stop()


def origin(letter: dict[str, str]) -> tuple[str, int, int]:
    return (
        letter["ingest_dlq_source_topic"],
        int(letter["ingest_dlq_source_partition"]),
        int(letter["ingest_dlq_source_offset"]),
    )


async def until(check: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.3)


@pytest.mark.timeout(240)
async def test_poison(harness: Harness, seed: int) -> None:
    workload = build(seed, users=40, events=1500)
    await dbstate.seed(harness.database_url, workload.people, late=True)
    repair_email = f"repair.{uuid.uuid4().hex[:8]}@faults.example"
    # `dlq replay` re-publishes every dead letter at once, the still-bad ones too; those
    # fail again without counting towards the poison-flood guard (consumers/runner.py).
    conn = await asyncpg.connect(harness.database_url)
    try:
        await conn.execute("INSERT INTO user_profiles (email) VALUES ($1)", repair_email)
        await conn.execute(ADD_CONSTRAINT)
        serve = harness.serve()
        members = [harness.consume("consumer-a"), harness.consume("consumer-b")]
        bad = bad_records(repair_email)
        posting = asyncio.create_task(
            post_all(lambda: f"http://127.0.0.1:{serve.port}", workload.requests, rate=40.0)
        )
        await asyncio.sleep(3.0)
        where = await publish(harness, bad)
        posted = await posting
        settled = await scenario.settle(harness, workload)

        async def all_dead() -> bool:
            return len(await dead_letters(harness)) >= len(bad)

        await until(all_dead)
        letters = await dead_letters(harness)
        by_origin = Counter(origin(letter) for letter in letters)
        logged = await conn.fetchval("SELECT count(*) FROM ingest_dead_letters")

        await conn.execute(DROP_CONSTRAINT)
        replay = harness.cli("dlq", "replay")
        assert replay.returncode == 0, replay.stderr
        repaired_id = next(h for h in bad if h.name == "constraint").headers[1][1].decode()

        async def repaired() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM ingest_inbox WHERE source = 'kit' AND event_id = $1",
                    repaired_id,
                )
            )

        await until(repaired)
        await asyncio.sleep(2.0)  # time for a second application, were there one
        profile = await conn.fetchrow(
            "SELECT kit_subscriber_id, kit_state FROM user_profiles WHERE email = $1", repair_email
        )
        after = await dead_letters(harness)
    finally:
        await conn.close()
    comparison = settled.comparison
    again = Counter(letter.get("ce_id", "-") for letter in after)
    scenario.report(
        "poison",
        {
            "seed": workload.seed,
            "valid events": len(workload.events),
            "requests accepted": f"{posted.accepted}/{len(workload.requests)}",
            "bad records": len(bad),
            "dead letters (topic / table)": (len(letters), logged),
            "error classes": sorted({letter["ingest_dlq_error_class"] for letter in letters}),
            "dlq replay": replay.stdout.strip().splitlines()[-1:],
            "dead letters after replay": len(after),
            "duplicates": comparison.duplicates,
            "losses": comparison.losses,
        },
    )
    for member in members:
        assert member.alive(), f"{member.name} exited: {member.log.read_text()[-3000:]}"
    assert len(letters) == len(bad) and logged == len(bad)
    assert set(by_origin) == set(where.values()) and set(by_origin.values()) == {1}
    assert comparison.duplicates == 0 and comparison.losses == 0, comparison.summary()
    assert profile is not None
    assert (profile["kit_subscriber_id"], profile["kit_state"]) == ("666", "active")
    assert again[repaired_id] == 1, "the repaired record was dead-lettered again"
    # The others fail again and are dead-lettered a second time, with their replay count.
    assert len(after) == 2 * len(bad) - 1
    await scenario.check_logs(harness, workload)
