"""The rc-sync process: the lock, the clients, the loop, the sweep, the health server,
signals and the shutdown order (docs/rc-sync.md).

Started by ``ingester rc-sync``; off unless ``REVENUECAT_API_KEY`` is set. The signal only
sets a flag: the batch in hand finishes within ``SHUTDOWN_DEADLINE_S`` and commits (or is
abandoned uncommitted, its open intent re-sent by the next start), the sweep stops at its
next customer, then the consumer leaves the group and the HTTP client, the pool and the lock
close in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import asyncpg

from consumers import db
from consumers.health import HealthServer
from consumers.liveness import Liveness
from consumers.policies import FetchPolicy
from consumers.runner import DEFAULT_BACKOFF
from consumers.service import broker_ok, database_ok, stop_on_signals
from contract.topics import SOURCE_REVENUECAT, STREAM_OF_SOURCE, topic_name
from core.kafka import make_consumer
from core.settings import Settings
from rcsync.api import ApiPolicy, RevenueCatApi
from rcsync.leader import Leader
from rcsync.loop import SyncLoop
from rcsync.sweep import SweepPolicy, run_sweeps
from rcsync.sync import Syncer

log = logging.getLogger("rcsync.service")


def rc_sync_topic(settings: Settings) -> str:
    return topic_name(settings.topic_prefix, STREAM_OF_SOURCE[SOURCE_REVENUECAT])


async def run_rc_sync(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    consumer_options: Mapping[str, Any] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop``); returns 0. Raises ``MissingSetting`` when
    ``REVENUECAT_API_KEY`` is unset, and what startup or the loop fail with."""
    policy = ApiPolicy.from_settings(settings)
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        leader = await Leader.acquire(settings.require_database_url(), stop)
        if leader is None:
            return 0
        try:
            return await _serve(settings, policy, leader, stop, consumer_options or {})
        finally:
            await leader.release()


async def _serve(
    settings: Settings,
    policy: ApiPolicy,
    leader: Leader,
    stop: asyncio.Event,
    consumer_options: Mapping[str, Any],
) -> int:
    topic = rc_sync_topic(settings)
    group = settings.with_overrides(consumer_group=settings.rc_sync_group)
    options = {"client_id": "ingester-rc-sync", **consumer_options}
    pool = await db.create_pool(settings)
    consumer = make_consumer(group, topic, **options)
    client = RevenueCatApi.client_for(policy)
    liveness = Liveness(settings.liveness_stall_s)
    syncer = Syncer(
        pool,
        RevenueCatApi(policy, client, on_attempt=liveness.beat),
        environment=settings.environment,
        concurrency=settings.rc_sync_concurrency,
        transaction_timeout_s=settings.db_transaction_timeout_s,
    )
    sync_loop = SyncLoop(
        consumer,
        pool,
        syncer,
        fetch=FetchPolicy(settings.consumer_batch_max, settings.consumer_batch_wait_ms),
        io_timeout_s=settings.kafka_io_timeout_s,
        shutdown_s=settings.shutdown_deadline_s,
        liveness=liveness,
        backoff=DEFAULT_BACKOFF,
    )
    health = HealthServer(
        readiness(leader, consumer, pool),
        settings.rc_sync_metrics_port,
        liveness=lambda: {
            "live": not liveness.stalled(),
            "since_progress_s": round(liveness.since_beat(), 1),
            "work_waiting": liveness.waiting,
        },
    )
    failures: list[BaseException] = []
    background: list[asyncio.Task[None]] = []
    try:
        await consumer.start()
        await health.start()
        log.info(
            "rc-sync running",
            extra={"topic": topic, "group": settings.rc_sync_group, "metrics_port": health.port},
        )
        sweep = SweepPolicy(settings.rc_sync_sweep_interval_s, settings.rc_sync_sweep_rows)
        background = [
            _guarded(run_sweeps(pool, syncer, sweep, stop), stop, failures),
            _guarded(leader.watch(stop), stop, failures),
        ]
        try:
            await sync_loop.run(stop)
        finally:
            stop.set()
            await _finish(background, settings.shutdown_deadline_s)
        if failures:
            raise failures[0]
        log.info("stopped")
        return 0
    finally:
        await consumer.stop()  # leaves the group; offsets were committed batch by batch
        await client.aclose()
        await pool.close()
        await health.stop()


def _guarded(
    work: Coroutine[Any, Any, None], stop: asyncio.Event, failures: list[BaseException]
) -> asyncio.Task[None]:
    """A task beside the loop whose failure stops the whole process."""

    async def run() -> None:
        try:
            await work
        except Exception as exc:
            failures.append(exc)
            stop.set()

    return asyncio.create_task(run())


async def _finish(tasks: list[asyncio.Task[None]], deadline_s: float) -> None:
    """Let the sweep reach its next customer; past the deadline, cancel it (an intent it
    left open is re-sent by the next start)."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=deadline_s)
    for task in late:
        task.cancel()
    for task in late:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def readiness(
    leader: Leader, consumer: Any, pool: asyncpg.Pool, timeout_s: float = 1.0
) -> Callable[[], Awaitable[dict[str, bool]]]:
    """/readyz: the lock is held, the consumer holds partitions, the broker and the database
    answer. RevenueCat is not asked: its outage is no reason to restart or route around
    this pod (the lag and rc_sync_calls_total say it)."""

    async def probe() -> dict[str, bool]:
        broker, database = await asyncio.gather(
            broker_ok(consumer, timeout_s), database_ok(pool, timeout_s)
        )
        return {
            "lock": leader.held,
            "consumer": bool(consumer.assignment()),
            "broker": broker,
            "database": database,
        }

    return probe
