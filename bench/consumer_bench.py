"""Benchmark 2: the real consumer runtime applying a backlog, against a naive baseline.

N first-party impressions and N Kit events are published to an embedded Tansu broker, then
``python -m ingester.cli consume --only <stream>`` (the deployed consumer, default batch
settings) applies them to an embedded PostgreSQL until every event is in ``ingest_inbox``.
One source at a time, so each rate is that source's alone.

The apply rate runs from the start of the consumer's first transaction (the earliest
``ingest_inbox.processed_at``) to the moment the last event is seen in the inbox, so process
start-up and the consumer-group join are reported apart. The baseline applies the same
decoded events, in a second database on the same server, one statement per row
(:mod:`bench.naive`).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import dataset, naive
from bench.ingest_bench import start_broker
from bench.procs import Cleanup, child_env, python, stop_process
from bench.stats import ratio, rounded
from contract.records import Record
from core.devstack import EmbeddedPostgres, TansuBroker, free_port
from core.kafka import make_producer, send_all
from core.migrate import default_dir, migrate
from core.settings import Settings
from core.topics import create_topics

POLL_S = 0.025
DATABASES = ("bench_batched", "bench_naive", "bench_copy")


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    events: int
    users: int
    timeout: float  # per source


@dataclass(frozen=True, slots=True)
class Source:
    name: str  # ce_source, the inbox's source column
    stream: str  # --only value and topic
    records: Sequence[Record]


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # time.time()
    consumer: float  # CPU seconds of the consumer process
    postgres: dict[int, float]  # CPU seconds per PostgreSQL process


class CpuMeter:
    """CPU seconds used by a set of processes (children included) between two readings."""

    def __init__(self, roots: Callable[[], list[psutil.Process]]) -> None:
        self._roots = roots

    def read(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        for root in self._roots():
            try:
                family = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in family:
                try:
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                seen[proc.pid] = times.user + times.system
        return seen

    @staticmethod
    def used(before: dict[int, float], after: dict[int, float]) -> float:
        return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def postmaster(data_dir: Path) -> list[psutil.Process]:
    pid_file = data_dir / "postmaster.pid"
    try:
        return [psutil.Process(int(pid_file.read_text().split()[0]))]
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return []


def database_dsn(postgres: EmbeddedPostgres, name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}"


def backlog(count: int, users: int, start: datetime) -> list[Source]:
    """The two sources every consumer benchmark applies: experiments impressions and Kit."""
    return [
        Source("app", "experiments", dataset.impression_records(count, users, start)),
        Source("kit", "kit", dataset.kit_records(count, users, start)),
    ]


def bench_settings(bootstrap: str, label: str) -> Settings:
    """Settings for one benchmark's topics: a fresh prefix on the embedded broker."""
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotent_producer=False,
        topic_prefix=f"{label}{secrets.token_hex(4)}.",
    )


async def prepare_databases(postgres: EmbeddedPostgres, users: int) -> dict[str, dataset.Seeded]:
    admin = await asyncpg.connect(postgres.dsn)
    try:
        for name in DATABASES:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    seeded: dict[str, dataset.Seeded] = {}
    for name in DATABASES:
        dsn = database_dsn(postgres, name)
        await migrate(dsn, default_dir())
        conn = await asyncpg.connect(dsn)
        try:
            seeded[name] = await dataset.seed(conn, users)
        finally:
            await conn.close()
    return seeded  # the naive loop and the COPY cache their own database's ids


async def publish(settings: Settings, records: Sequence[Record]) -> float:
    """Publish with ``acks=all``; the records per second the broker acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    started = time.perf_counter()
    try:
        await send_all(producer, settings.topic_prefix, records)
    finally:
        await producer.stop()
    return len(records) / (time.perf_counter() - started)


async def consume_source(
    cleanup: Cleanup,
    workdir: Path,
    env: dict[str, str],
    source: Source,
    postgres: EmbeddedPostgres,
    timeout: float,
    database: str = DATABASES[0],
) -> dict[str, Any]:
    """Run the consumer for one stream until every record is in the inbox of ``database``
    (the one ``env``'s DATABASE_URL names)."""
    conn = await asyncpg.connect(database_dsn(postgres, database))
    pg_cpu = CpuMeter(lambda: postmaster(postgres.data_dir))
    expected = len(source.records)
    count_sql = "SELECT count(*) FROM ingest_inbox WHERE source = $1"
    try:
        spawned = time.time()
        metrics_port = free_port()
        proc = cleanup.spawn(
            [python(), "-m", "ingester.cli", "consume", "--only", source.stream],
            # A group of its own: a member that just left another source's group would
            # otherwise hold the join until the broker's session timeout.
            env={
                **env,
                "CONSUMER_GROUP": f"bench-{source.stream}-{secrets.token_hex(4)}",
                "CONSUMER_METRICS_PORT": str(metrics_port),
            },
            cwd=workdir,
            log=workdir / f"consumer-{source.stream}.log",
        )
        consumer = psutil.Process(proc.pid)
        deadline = time.monotonic() + timeout
        first_cpu: Reading | None = None
        while (count := await conn.fetchval(count_sql, source.name)) < expected:
            if proc.poll() is not None:
                raise RuntimeError(f"the {source.stream} consumer exited ({proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{source.stream}: {count} of {expected} applied in time")
            if count and first_cpu is None:
                first_cpu = Reading(time.time(), _cpu(consumer), pg_cpu.read())
            await asyncio.sleep(POLL_S)
        done = time.time()
        end_cpu = Reading(done, _cpu(consumer), pg_cpu.read())
        batches = await scrape_batches(metrics_port, source.name)
        stop_process(proc)
        result = await _summarise(conn, source, spawned, done, first_cpu, end_cpu)
        return {**result, **batches}
    finally:
        await conn.close()


async def scrape_batches(port: int, source: str) -> dict[str, Any]:
    """Batch count, mean batch size and handler seconds from the consumer's own /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("source") == source:
                values[sample.name] = sample.value
    batches = values.get("consumer_batch_size_count", 0.0)
    return {
        "batches": int(batches),
        "mean_batch_size": round(values.get("consumer_batch_size_sum", 0.0) / batches, 1)
        if batches
        else None,
        "handler_s": round(values.get("consumer_apply_latency_seconds_sum", 0.0), 3),
    }


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _summarise(
    conn: asyncpg.Connection,
    source: Source,
    spawned: float,
    done: float,
    first_cpu: Reading | None,
    end_cpu: Reading,
) -> dict[str, Any]:
    first: datetime = await conn.fetchval(
        "SELECT min(processed_at) FROM ingest_inbox WHERE source = $1", source.name
    )
    pending = await conn.fetchval(
        "SELECT count(*) FROM ingest_pending WHERE source = $1", source.name
    )
    skipped = await conn.fetchval(
        "SELECT count(*) FROM ingest_skipped WHERE source = $1", source.name
    )
    apply_s = done - first.timestamp()
    events = len(source.records)
    result: dict[str, Any] = {
        "source": source.name,
        "events": events,
        "applied": events - pending - skipped,
        "pending": pending,
        "skipped": skipped,
        "startup_s": round(first.timestamp() - spawned, 2),
        "apply_s": round(apply_s, 3),
        "events_per_s": round(events / apply_s, 1),
        "wall_s_including_startup": round(done - spawned, 2),
    }
    if first_cpu is not None and end_cpu.at > first_cpu.at:
        # From the first poll that saw events applied to the end: nearly the apply window.
        window = end_cpu.at - first_cpu.at
        result["consumer_cpu_cores"] = round((end_cpu.consumer - first_cpu.consumer) / window, 2)
        result["postgres_cpu_cores"] = round(
            CpuMeter.used(first_cpu.postgres, end_cpu.postgres) / window, 2
        )
    return result


async def run_copy(
    postgres: EmbeddedPostgres, source: Source, seeded: dataset.Seeded
) -> naive.NaiveRun:
    """COPY of the same impression rows into ``impressions`` of a third database."""
    conn = await asyncpg.connect(database_dsn(postgres, DATABASES[2]))
    try:
        events = naive.decode_records(source.records, f"copy.{source.stream}")
        return await naive.copy_impressions(conn, events, seeded)
    finally:
        await conn.close()


async def run_naive(
    postgres: EmbeddedPostgres, sources: Sequence[Source], seeded: dataset.Seeded
) -> dict[str, naive.NaiveRun]:
    conn = await asyncpg.connect(database_dsn(postgres, DATABASES[1]))
    try:
        runs = {}
        for source in sources:
            events = naive.decode_records(source.records, f"naive.{source.stream}")
            if source.stream == "experiments":
                runs[source.name] = await naive.apply_impressions(conn, events, seeded)
            else:
                runs[source.name] = await naive.apply_kit(conn, events)
        return runs
    finally:
        await conn.close()


async def measure(
    cleanup: Cleanup,
    workdir: Path,
    postgres: EmbeddedPostgres,
    broker: TansuBroker,
    options: ConsumeOptions,
    log: Callable[[str], None],
) -> dict[str, Any]:
    seeded = await prepare_databases(postgres, options.users)
    start = datetime.now(UTC) - timedelta(hours=6)
    sources = backlog(options.events, options.users, start)
    settings = bench_settings(broker.bootstrap, "bench")
    await create_topics(settings)
    publish_rates = {s.name: await publish(settings, s.records) for s in sources}
    log(f"published {options.events} records per source")
    env = child_env(
        {
            "DATABASE_URL": database_dsn(postgres, DATABASES[0]),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_IDEMPOTENT_PRODUCER": "false",
            "TOPIC_PREFIX": settings.topic_prefix,
            "ENVIRONMENT": "dev",
        }
    )
    batched = {}
    for source in sources:
        batched[source.name] = await consume_source(
            cleanup, workdir, env, source, postgres, options.timeout
        )
        log(f"  consumer {source.stream}: {batched[source.name]['events_per_s']} events/s")
    naive_runs = await run_naive(postgres, sources, seeded[DATABASES[1]])
    copied = await run_copy(postgres, sources[0], seeded[DATABASES[2]])
    log(f"  COPY of the impression rows: {copied.events_per_s:.1f} rows/s")
    results = []
    for source in sources:
        run = naive_runs[source.name]
        log(f"  naive {source.stream}: {run.events_per_s:.1f} events/s")
        results.append(
            {
                **batched[source.name],
                "publish_records_per_s": round(publish_rates[source.name], 1),
                "naive_events_per_s": round(run.events_per_s, 1),
                "naive_statements": run.statements,
                "naive_s": round(run.seconds, 3),
                "batched_over_naive": rounded(
                    ratio(batched[source.name]["events_per_s"], run.events_per_s)
                ),
            }
        )
    by_source = {r["source"]: r for r in results}
    app_rate = by_source["app"]["events_per_s"]
    return {
        "users": options.users,
        "sources": results,
        "copy_rows_per_s": round(copied.events_per_s, 1),
        "figures": {
            "consume_vs_naive_app": by_source["app"]["batched_over_naive"],
            "consume_vs_naive_kit": by_source["kit"]["batched_over_naive"],
            "consume_vs_copy": rounded(ratio(app_rate, copied.events_per_s)),
        },
    }


def start_servers(
    cleanup: Cleanup, prefix: str, log: Callable[[str], None]
) -> tuple[Path, EmbeddedPostgres, TansuBroker]:
    """A fresh folder (PostgreSQL's data and the consumers' logs), PostgreSQL and Tansu."""
    workdir = cleanup.temp_dir(prefix)
    postgres = EmbeddedPostgres(workdir / "pgdata")
    cleanup.add("stop PostgreSQL", postgres.stop_sync)
    postgres.start_sync()
    broker = start_broker(cleanup)
    log(f"PostgreSQL on port {postgres.port}, Tansu on {broker.bootstrap}")
    return workdir, postgres, broker


def run(cleanup: Cleanup, options: ConsumeOptions, log: Callable[[str], None]) -> dict[str, Any]:
    workdir, postgres, broker = start_servers(cleanup, "bench-consume-", log)
    return asyncio.run(measure(cleanup, workdir, postgres, broker, options, log))
