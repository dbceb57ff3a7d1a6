"""Scenario 2: the broker stops under a stream of signed requests.

SIGSTOP (the broker hangs) and, separately, SIGKILL + restart (the broker is gone, then
back on the same port). Every request answered 2xx has its records on the topic afterwards;
every other one got 503 with Retry-After; readiness turns 503 and back to 200 without a
restart of ingest.

The embedded broker keeps its log in memory, so a killed one forgets every record, including
those acknowledged before the kill (a real Kafka cluster keeps them), and its topics. After
the restart the check is therefore limited to requests accepted after it; the SIGSTOP phase
checks them all.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.faults import scenario
from tests.faults.conftest import needs_private_broker
from tests.faults.harness import Child, Harness
from tests.faults.workload import Request, build

PRODUCE_TIMEOUT_S = 2.0
RATE = 25.0  # requests per second
KIT_TOPIC = "ingest.kit.v1"


@dataclass(slots=True)
class Stream:
    """One attempt per request, no retries: what each got and how long it took."""

    answers: list[tuple[Request, int, float, bool, float]] = field(default_factory=list)
    readiness: list[tuple[float, int]] = field(default_factory=list)

    def accepted_ids(self, since: float = 0.0) -> set[str]:
        return {
            event_id
            for request, status, _, _, sent_at in self.answers
            if 200 <= status < 300 and sent_at >= since
            for event_id in request.events
        }


def kit_requests(seed: int, count: int) -> list[Request]:
    workload = build(seed, users=40, events=count * 35)
    kits = [r for r in workload.requests if r.path == "/webhooks/kit"]
    assert len(kits) >= count
    return kits[:count]


async def stream(serve: Child, requests: list[Request], out: Stream) -> None:
    base = f"http://127.0.0.1:{serve.port}"
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=PRODUCE_TIMEOUT_S + 10) as client:

        async def one(n: int, request: Request) -> None:
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
            sent_at = time.monotonic()
            response = await client.post(
                base + request.path, content=request.body, headers=request.signed()
            )
            out.answers.append(
                (
                    request,
                    response.status_code,
                    time.monotonic() - sent_at,
                    "retry-after" in response.headers,
                    sent_at,
                )
            )

        results = await asyncio.gather(
            *(one(n, r) for n, r in enumerate(requests)), return_exceptions=True
        )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} requests failed, e.g. {failures[:3]!r}"


async def watch_readiness(serve: Child, out: Stream, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=3.0) as client:
        while not stop.is_set():
            try:
                status = (await client.get(f"http://127.0.0.1:{serve.port}/readyz")).status_code
            except httpx.HTTPError:
                status = 0
            out.readiness.append((time.monotonic(), status))
            await asyncio.sleep(0.2)


async def topic_ids(harness: Harness) -> Counter[str]:
    return Counter({f"kit/{k}": n for k, n in (await topic_ids_of(harness, KIT_TOPIC)).items()})


async def topic_ids_of(harness: Harness, stream: str) -> Counter[str]:
    """ce_id of every record on a topic, read to the end of each partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=harness.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = harness.prefix + stream
        tps = [
            TopicPartition(topic, p)
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: Counter[str] = Counter()
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    found[dict(record.headers).get("ce_id", b"-").decode()] += 1
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def figures(out: Stream) -> dict[str, object]:
    statuses = Counter(status for _, status, _, _, _ in out.answers)
    return {
        "requests": len(out.answers),
        "answers": dict(statuses),
        "max latency (s)": round(max(s for _, _, s, _, _ in out.answers), 2),
        "readiness answers": dict(Counter(s for _, s in out.readiness)),
    }


def check_answers(out: Stream) -> None:
    for request, status, _, retry_after, _ in out.answers:
        assert 200 <= status < 300 or (status == 503 and retry_after), (request.path, status)


@needs_private_broker()
@pytest.mark.timeout(180)
async def test_broker_sigstop(harness: Harness, seed: int) -> None:
    serve = harness.serve()
    out, stop = Stream(), asyncio.Event()
    watcher = asyncio.create_task(watch_readiness(serve, out, stop))
    sending = asyncio.create_task(stream(serve, kit_requests(seed, 250), out))
    await asyncio.sleep(2.0)
    harness.kill_pid(harness.broker_pid(), signal.SIGSTOP)
    frozen_at = time.monotonic()
    await asyncio.sleep(8.0)
    harness.kill_pid(harness.broker_pid(), signal.SIGCONT)
    thawed_at = time.monotonic()
    await sending
    await _until_ready(out, serve)
    stop.set()
    await watcher
    on_topic = await topic_ids(harness)
    accepted = out.accepted_ids()
    during = [s for t, s in out.readiness if frozen_at < t < thawed_at]
    scenario.report(
        "broker SIGSTOP", {**figures(out), "accepted ids missing": len(accepted - set(on_topic))}
    )
    check_answers(out)
    assert accepted <= set(on_topic)
    assert any(s == 503 for _, s, _, _, _ in out.answers), "the freeze produced no 503"
    assert 503 in during or 0 in during, "readiness stayed 200 while the broker was frozen"
    assert out.readiness[-1][1] == 200
    await scenario.check_logs(harness)


@needs_private_broker()
@pytest.mark.timeout(180)
async def test_broker_kill_restart(harness: Harness, seed: int) -> None:
    serve = harness.serve()
    out, stop = Stream(), asyncio.Event()
    watcher = asyncio.create_task(watch_readiness(serve, out, stop))
    sending = asyncio.create_task(stream(serve, kit_requests(seed, 250), out))
    await asyncio.sleep(2.0)
    assert harness.broker is not None
    harness.broker.stop_sync()  # SIGKILL: memory storage, nothing survives
    killed_at = time.monotonic()
    await asyncio.sleep(5.0)
    # The restarted broker has no topics. Tansu creates a topic with 4 partitions when a
    # client merely asks for its metadata, and acknowledges records sent to partitions it
    # does not have; ingest reconnecting before `topics create` would have records of 2xx
    # answers vanish. Ingest is held (SIGSTOP) for the moment the topics take to be
    # re-created, as an operator restores a broker before sending it traffic.
    harness.kill_pid(serve.pid, signal.SIGSTOP)
    try:
        await harness.broker.start()
        await harness.create_topics()
    finally:
        harness.kill_pid(serve.pid, signal.SIGCONT)
    restarted_at = time.monotonic()
    await sending
    recovered = await _until_ready(out, serve)
    stop.set()
    await watcher
    on_topic = await topic_ids(harness)
    after = out.accepted_ids(since=restarted_at)
    down = [s for t, s in out.readiness if killed_at < t < restarted_at]
    scenario.report(
        "broker SIGKILL + restart",
        {
            **figures(out),
            "accepted after restart": len(after),
            "of those missing on the topic": len(after - set(on_topic)),
            "readiness back after restart (s)": round(recovered - restarted_at, 2),
        },
    )
    check_answers(out)
    assert any(s == 503 for _, s, _, _, _ in out.answers), "the outage produced no 503"
    assert after and after <= set(on_topic)
    assert 503 in down, "readiness stayed 200 while the broker was down"
    assert serve.alive()
    await scenario.check_logs(harness)


async def _until_ready(out: Stream, serve: Child, timeout: float = 60.0) -> float:
    """When ingest's readiness answered 200 again (it is never restarted)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3.0) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"http://127.0.0.1:{serve.port}/readyz")
            out.readiness.append((time.monotonic(), response.status_code))
            if response.status_code == 200:
                return time.monotonic()
            await asyncio.sleep(0.2)
    raise AssertionError("ingest never became ready again")
