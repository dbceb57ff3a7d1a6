"""A whole consumer process around a :class:`~consumers.runner.Runner`: clients, health
server, signals and the shutdown order. ``ingester consume`` is this with the built-in
handlers; an internal team runs it with its own (see docs/consumers.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import asyncpg
from aiokafka import errors as kafka_errors
from opentelemetry.trace import Tracer

from consumers import db
from consumers.backoff import Backoff
from consumers.dlq import DeadLetterSink
from consumers.health import HealthServer
from consumers.pending.retry import PendingRetry
from consumers.pending.task import RetryTask
from consumers.policies import ApplyPolicy, FetchPolicy, FloodPolicy, Timeouts
from consumers.registry import topics_for
from consumers.runner import DEFAULT_BACKOFF, NO_HOOKS, Hooks, Runner
from consumers.types import Handler
from core import telemetry
from core.kafka import make_consumer, make_producer
from core.settings import Settings

log = logging.getLogger("consumers.service")


async def run_service(
    settings: Settings,
    handlers: Iterable[Handler],
    *,
    topics: Sequence[str] | None = None,
    scope: str = "",
    consumer_options: Mapping[str, Any] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Consume ``topics`` (default: the topics of the handlers' sources) with ``handlers``
    in the group ``settings.consumer_group`` until SIGTERM/SIGINT (or ``stop``).

    The signal only sets a flag: the batch in flight finishes within
    ``settings.shutdown_deadline_s`` and commits its offsets, then the consumer leaves the
    group, and the consumer, producer and pool close in that order. Returns 0; startup and
    runtime failures propagate to the caller.
    """
    by_source = {h.source: h for h in handlers}
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        return await _serve(
            settings,
            by_source,
            topics or topics_for(settings.topic_prefix, by_source),
            scope,
            consumer_options or {},
            stop,
        )


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (and do nothing else) while the block runs."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _serve(
    settings: Settings,
    handlers: dict[str, Handler],
    topics: Sequence[str],
    scope: str,
    consumer_options: Mapping[str, Any],
    stop: asyncio.Event,
) -> int:
    tracing = telemetry.tracer_provider(settings, "ingester-consumers")
    pool = await db.create_pool(settings)
    producer = make_producer(settings)
    consumer = make_consumer(settings, *topics, **consumer_options)
    health: HealthServer | None = None
    try:
        await producer.start()
        await consumer.start()
        dead_letters = DeadLetterSink.from_settings(settings, producer)
        runner = build_runner(
            settings,
            handlers,
            pool,
            consumer,
            dead_letters,
            scope=scope,
            tracer=tracing.get_tracer("consumers"),
        )
        health = HealthServer(
            readiness_probe(runner, pool),
            settings.consumer_metrics_port,
            liveness=liveness_probe(runner),
        )
        await health.start()
        log.info(
            "consuming",
            extra={
                "topics": list(topics),
                "group": settings.consumer_group,
                "metrics_port": health.port,
            },
        )
        retry = RetryTask(
            PendingRetry.from_settings(settings, pool, handlers, dead_letters, scope=scope)
        )
        # The retry of parked events runs beside the loop, never inside it (a pass awaits the
        # database chunk by chunk while the runner keeps fetching and committing).
        retrying = asyncio.create_task(retry.run(stop), name="pending-retry")
        try:
            await runner.run(stop)
        finally:
            stop.set()
            await _finish(retrying, settings.shutdown_deadline_s)
        log.info("stopped")
        return 0
    finally:
        await consumer.stop()  # leaves the group; offsets were committed batch by batch
        await producer.stop()
        await pool.close()
        if health is not None:
            await health.stop()
        tracing.shutdown()  # exports what is left, when exporting


def build_runner(
    settings: Settings,
    handlers: Mapping[str, Handler] | Iterable[Handler],
    pool: asyncpg.Pool,
    consumer: Any,
    dead_letters: DeadLetterSink,
    *,
    scope: str = "",
    backoff: Backoff = DEFAULT_BACKOFF,
    hooks: Hooks = NO_HOOKS,
    tracer: Tracer | None = None,
) -> Runner:
    """The runner of :func:`run_service`, its policies read from ``settings``."""
    return Runner(
        handlers,
        pool,
        consumer,
        dead_letters,
        fetch=FetchPolicy(
            max_records=settings.consumer_batch_max, wait_ms=settings.consumer_batch_wait_ms
        ),
        apply=ApplyPolicy(
            environment=settings.environment,
            concurrency=settings.consumer_apply_concurrency,
            transaction_timeout_s=settings.db_transaction_timeout_s,
            backoff_max_s=settings.pending_backoff_max_s,
        ),
        timeouts=Timeouts(
            io_s=settings.kafka_io_timeout_s,
            shutdown_s=settings.shutdown_deadline_s,
            liveness_stall_s=settings.liveness_stall_s,
        ),
        flood=FloodPolicy(
            max_share=settings.poison_max_share,
            min_dead=settings.poison_min_dead,
            window_records=settings.poison_window_records,
            window_s=settings.poison_window_s,
            min_records=settings.poison_min_records,
        ),
        scope=scope,
        backoff=backoff,
        hooks=hooks,
        tracer=tracer,
    )


async def _finish(task: asyncio.Task[None], deadline_s: float) -> None:
    """Let a pass in flight end at its next chunk; past the deadline, cancel it (its open
    chunk rolls back and is retried by the next pass)."""
    try:
        await asyncio.wait_for(task, deadline_s)
    except TimeoutError:
        log.warning("pending retry abandoned at shutdown")


def readiness_probe(
    runner: Runner, pool: asyncpg.Pool, timeout_s: float = 1.0
) -> Callable[[], Awaitable[dict[str, bool]]]:
    """/readyz: the consumer holds partitions (and is not holding after a poison flood), the
    broker answers a metadata request and the database answers, each within ``timeout_s``."""

    async def probe() -> dict[str, bool]:
        broker, database = await asyncio.gather(
            broker_ok(runner.consumer, timeout_s), database_ok(pool, timeout_s)
        )
        return {"consumer": runner.ready, "broker": broker, "database": database}

    return probe


def liveness_probe(runner: Runner) -> Callable[[], dict[str, Any]]:
    """/healthz: live unless the loop stalled with work waiting (``consumers.liveness``)."""

    def probe() -> dict[str, Any]:
        live = runner.liveness
        return {
            "live": not live.stalled(),
            "since_progress_s": round(live.since_beat(), 1),
            "work_waiting": live.waiting,
        }

    return probe


async def broker_ok(consumer: Any, timeout_s: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.topics()  # a metadata request to the cluster
    except (OSError, kafka_errors.KafkaError):
        return False
    return True


async def database_ok(pool: asyncpg.Pool, timeout_s: float = 1.0) -> bool:
    try:
        async with asyncio.timeout(timeout_s), db.connection(pool, timeout_s) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout_s)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return True
