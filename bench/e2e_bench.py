"""Benchmark 4: end to end, HTTP request to applied row, and how the apply rate scales.

Latency: one ingest server and two consumer processes in one group (embedded PostgreSQL,
Tansu, six partitions per topic). An open-loop sender offers a steady RATE events/s of mixed
sources over HTTP — half first-party impressions (``POST /events``, 50 per request), half Kit
events (``POST /webhooks/kit``, 10 per delivery) — on a fixed schedule, whatever the
answers. The server records the commit time of every transaction (``track_commit_timestamp``),
so each event's applied time is the commit time of the transaction that wrote its inbox row
(``pg_xact_commit_timestamp(xmin)``), read once at the end instead of polled under load. A
request's latency runs from its scheduled send time to the commit of the last of its
events.

Scaling: a mixed backlog (impressions and Kit events) applied by one consumer process, then
the same backlog (in another database, another group) by two processes of one group. Both
runs start with the consumers joined and idle, then the backlog is published; the rate runs
from the first transaction (earliest ``processed_at``) to the last event seen in the inbox.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

from bench import dataset, payloads
from bench.consumer_bench import CpuMeter, postmaster
from bench.ingest_bench import start_broker
from bench.loadgen import ProtocolError, read_response
from bench.procs import Cleanup, child_env, python, stop_process
from bench.stats import latency_summary, ratio, rounded
from contract.records import Record
from core.devstack import EmbeddedPostgres, TansuBroker, free_port
from core.kafka import make_producer, send_all
from core.migrate import default_dir, migrate
from core.settings import Settings
from core.topics import create_topics

SENDER_CONNECTIONS = 64
SETTLE_S = 5.0
USERS = 5000  # bench.payloads spreads requests over this many users
COMMITTED_SQL = """
SELECT source, event_id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS at
FROM ingest_inbox
"""


@dataclass(frozen=True, slots=True)
class E2EOptions:
    rate: float  # events/s offered
    duration: float  # measured seconds
    warmup: float  # seconds at the same rate before, not measured
    backlog: int  # events per source for the scaling run
    timeout: float


@dataclass(slots=True)
class Sent:
    at: float  # scheduled send time: offset from the start, then wall-clock seconds
    ids: dict[str, list[str]]  # ce_source -> event ids
    measured: bool
    status: int = 0
    late_s: float = 0.0  # how far behind its schedule the sender was (an overloaded sender)
    answered_at: float | None = None  # wall clock
    applied_at: float | None = None  # wall-clock commit of its last event


class Stack:
    """The servers and the processes one measurement runs."""

    def __init__(self, cleanup: Cleanup, workdir: Path) -> None:
        self.cleanup = cleanup
        self.workdir = workdir
        self.postgres = EmbeddedPostgres(workdir / "pgdata")
        cleanup.add("stop PostgreSQL", self.postgres.stop_sync)
        self.postgres.start_sync()
        asyncio.run(_track_commit_timestamps(self.postgres.dsn))
        self.postgres.stop_sync()  # the setting takes a restart
        self.postgres.start_sync()
        self.broker: TansuBroker = start_broker(cleanup)

    def dsn(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres.port}/{name}"

    async def database(self, name: str) -> str:
        admin = await asyncpg.connect(self.postgres.dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        dsn = self.dsn(name)
        await migrate(dsn, default_dir())
        conn = await asyncpg.connect(dsn)
        try:
            await dataset.seed(conn, USERS)
        finally:
            await conn.close()
        return dsn

    async def topics(self) -> Settings:
        settings = Settings(
            kafka_bootstrap_servers=self.broker.bootstrap,
            kafka_idempotent_producer=False,
            topic_prefix=f"e2e{secrets.token_hex(4)}.",
        )
        await create_topics(settings)
        return settings

    def env(self, settings: Settings, dsn: str) -> dict[str, str]:
        return child_env(
            {
                "DATABASE_URL": dsn,
                "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
                "KAFKA_IDEMPOTENT_PRODUCER": "false",
                "TOPIC_PREFIX": settings.topic_prefix,
                "ENVIRONMENT": "dev",
                **payloads.secret_env(),
            }
        )

    def spawn(self, argv: list[str], env: dict[str, str], name: str) -> tuple[Any, int]:
        port = free_port()
        port_var = "PORT" if argv[0] == "serve" else "CONSUMER_METRICS_PORT"
        proc = self.cleanup.spawn(
            [python(), "-m", "ingester.cli", *argv],
            env={**env, port_var: str(port)},
            cwd=self.workdir,  # empty: no `make dev` env file is read
            log=self.workdir / f"{name}.log",
        )
        return proc, port

    def consumers(self, env: dict[str, str], count: int, group: str) -> list[tuple[Any, int]]:
        group_env = {**env, "CONSUMER_GROUP": group}
        return [self.spawn(["consume"], group_env, f"{group}-{i}") for i in range(count)]


async def _track_commit_timestamps(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    finally:
        await conn.close()


async def wait_settled(procs: Sequence[tuple[Any, int]]) -> None:
    """Ready, and still ready after SETTLE_S: a member that joined last makes the group
    rebalance, which must be over before the clock starts."""
    await wait_ready(procs)
    await asyncio.sleep(SETTLE_S)
    await wait_ready(procs)


async def wait_ready(procs: Sequence[tuple[Any, int]], timeout: float = 90.0) -> None:
    """Every process answers /readyz 200 (a consumer: it holds partitions)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        for proc, port in procs:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"a benchmark process exited ({proc.returncode})")
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("processes not ready in time")
                await asyncio.sleep(0.1)


# -- latency ------------------------------------------------------------------------------


def schedule(options: E2EOptions) -> list[tuple[float, payloads.Request, Sent]]:
    """Requests at fixed offsets: for every 2 x 50 events, one /events batch of 50 and five
    Kit deliveries of 10, spread evenly."""
    per_cycle = 2 * payloads.EVENTS_PER_BATCH
    cycle_s = per_cycle / options.rate
    kit_per_cycle = payloads.EVENTS_PER_BATCH // payloads.KIT_EVENTS_PER_DELIVERY
    total_s = options.warmup + options.duration
    plan: list[tuple[float, payloads.Request, Sent]] = []
    serial = 0
    for cycle in range(int(total_s / cycle_s)):
        base = cycle * cycle_s
        slots = 1 + kit_per_cycle
        for slot in range(slots):
            at = base + slot * cycle_s / slots
            serial += 1
            if slot == 0:
                request = payloads.events_batch(serial)
                ids = {"app": [i["id"].lower() for i in orjson.loads(request.body)["events"]]}
            else:
                request = payloads.kit_delivery(serial)
                ids = {"kit": [e["id"] for e in orjson.loads(request.body)["events"]]}
            plan.append((at, request, Sent(at, ids, measured=at >= options.warmup)))
    return plan


async def offer(port: int, plan: Sequence[tuple[float, payloads.Request, Sent]]) -> None:
    """Send every request at its offset from now (open loop), whatever the answers, over a
    pool of keep-alive connections (pre-encoded bytes: the sender must stay light). A request
    waiting for a free connection is late; its latency counts from its scheduled time."""
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    opened = []
    for _ in range(SENDER_CONNECTIONS):
        opened.append(await asyncio.open_connection("127.0.0.1", port))
        free.put_nowait(opened[-1])
    encoded = [request.encode(port) for _, request, _ in plan]
    started, started_wall = time.monotonic(), time.time()

    async def send(raw: bytes, sent: Sent) -> None:
        reader, writer = await free.get()
        try:
            writer.write(raw)
            await writer.drain()
            sent.status = await read_response(reader)
            sent.answered_at = time.time()
        except (OSError, asyncio.IncompleteReadError, ProtocolError):
            sent.status = -1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            free.put_nowait((reader, writer))

    tasks = []
    for (at, _, sent), raw in zip(plan, encoded, strict=True):
        sent.at = started_wall + at
        delay = started + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.late_s = max(0.0, -delay)
        tasks.append(asyncio.create_task(send(raw, sent)))
    await asyncio.gather(*tasks)
    while not free.empty():
        _, writer = free.get_nowait()
        writer.close()


async def collect_applied(dsn: str, sent: Sequence[Sent], timeout: float) -> None:
    """Wait until every event of every accepted request is in the inbox (or ``timeout``),
    then give each request the commit time of its last event."""
    expected = sum(len(ids) for s in sent if 200 <= s.status < 300 for ids in s.ids.values())
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while await conn.fetchval("SELECT count(*) FROM ingest_inbox") < expected:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        committed = {(r["source"], r["event_id"]): r["at"] for r in await conn.fetch(COMMITTED_SQL)}
    finally:
        await conn.close()
    for request in sent:
        times = [committed.get((src, i)) for src, ids in request.ids.items() for i in ids]
        if times and all(t is not None for t in times):
            request.applied_at = max(t for t in times if t is not None)


async def latency(stack: Stack, options: E2EOptions, log: Callable[[str], None]) -> dict[str, Any]:
    dsn = await stack.database("bench_e2e")
    settings = await stack.topics()
    env = stack.env(settings, dsn)
    server = stack.spawn(["serve"], env, "ingest-server")
    consumers = stack.consumers(env, 2, f"bench-e2e-{secrets.token_hex(4)}")
    try:
        await wait_settled([server, *consumers])
        plan = schedule(options)
        log(
            f"  offering {options.rate:.0f} events/s for {options.warmup:.0f} + "
            f"{options.duration:.0f} s ({len(plan)} requests), two consumer processes"
        )
        await offer(server[1], plan)
        sent = [s for _, _, s in plan]
        await collect_applied(dsn, sent, options.timeout)
    finally:
        for proc, _ in [*consumers, server]:
            stop_process(proc)
    measured = [s for s in sent if s.measured]
    ok = [s for s in measured if 200 <= s.status < 300]
    applied = [s.applied_at - s.at for s in ok if s.applied_at is not None]
    events = sum(len(ids) for s in measured for ids in s.ids.values())
    summary = latency_summary(applied)
    answered = [s.answered_at - s.at for s in ok if s.answered_at is not None]
    return {
        "rate_events_per_s": options.rate,
        "duration_s": options.duration,
        "requests": len(measured),
        "events": events,
        "not_ok": len(measured) - len(ok),
        "not_applied": len(ok) - len(applied),
        "latency_ms": summary,
        "http_answer_ms": latency_summary(answered),
        "sender_late_ms": latency_summary([s.late_s for s in measured]),
    }


# -- scaling ------------------------------------------------------------------------------


async def apply_rate(
    stack: Stack,
    processes: int,
    records: Sequence[Record],
    expected: int,
    timeout: float,
) -> dict[str, Any]:
    dsn = await stack.database(f"bench_scale_{processes}")
    settings = await stack.topics()
    consumers = stack.consumers(
        stack.env(settings, dsn), processes, f"bench-scale-{secrets.token_hex(4)}"
    )
    conn = await asyncpg.connect(dsn)
    meter = CpuMeter(lambda: [psutil.Process(p.pid) for p, _ in consumers])
    pg_meter = CpuMeter(lambda: postmaster(stack.postgres.data_dir))
    try:
        await wait_settled(consumers)
        before = (time.time(), meter.read(), pg_meter.read(), _machine_busy())
        producer = make_producer(settings)
        await producer.start()
        try:
            await send_all(producer, settings.topic_prefix, records)
        finally:
            await producer.stop()
        deadline = time.monotonic() + timeout
        while (count := await conn.fetchval("SELECT count(*) FROM ingest_inbox")) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} of {expected} applied in time")
            await asyncio.sleep(0.025)
        done = time.time()
        after = (done, meter.read(), pg_meter.read(), _machine_busy())
        first: datetime = await conn.fetchval("SELECT min(processed_at) FROM ingest_inbox")
    finally:
        await conn.close()
        for proc, _ in consumers:
            stop_process(proc)
    seconds = done - first.timestamp()
    window = after[0] - before[0]
    return {
        "processes": processes,
        "events": expected,
        "apply_s": round(seconds, 3),
        "events_per_s": round(expected / seconds, 1),
        # Cores used from the publish to the last event: what the consumers and PostgreSQL
        # got, and how busy the whole machine was (other work included).
        "consumer_cpu_cores": round(CpuMeter.used(before[1], after[1]) / window, 2),
        "postgres_cpu_cores": round(CpuMeter.used(before[2], after[2]) / window, 2),
        "machine_busy_cores": round((after[3] - before[3]) / window, 2),
    }


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, all processes)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


async def scaling(stack: Stack, options: E2EOptions, log: Callable[[str], None]) -> dict[str, Any]:
    start = datetime.now(UTC) - timedelta(hours=6)
    records = [
        *dataset.impression_records(options.backlog, USERS, start),
        *dataset.kit_records(options.backlog, USERS, start),
    ]
    runs = []
    for processes in (1, 2):
        run = await apply_rate(stack, processes, records, 2 * options.backlog, options.timeout)
        log(f"  mixed backlog, {processes} consumer process(es): {run['events_per_s']} events/s")
        runs.append(run)
    return {
        "runs": runs,
        "two_over_one": rounded(ratio(runs[1]["events_per_s"], runs[0]["events_per_s"])),
    }


async def measure(stack: Stack, options: E2EOptions, log: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"latency": await latency(stack, options, log)}
    result["scaling"] = await scaling(stack, options, log)
    p99 = result["latency"]["latency_ms"]["p99"]
    result["figures"] = {
        "e2e_p99_ms": None if math.isnan(p99) else round(p99, 1),
        "consume_2proc_vs_1proc": result["scaling"]["two_over_one"],
    }
    return result


def run(cleanup: Cleanup, options: E2EOptions, log: Callable[[str], None]) -> dict[str, Any]:
    stack = Stack(cleanup, cleanup.temp_dir("bench-e2e-"))
    log(f"PostgreSQL on port {stack.postgres.port}, Tansu on {stack.broker.bootstrap}")
    return asyncio.run(measure(stack, options, log))
