"""rc-sync killed (SIGKILL) while RevenueCat holds its call: the call reached RevenueCat, its
answer never reached rc-sync. The next process re-sends exactly the same (value,
updated_at_ms), so RevenueCat sees one change, and the offsets move on only after that.
rc-sync runs as `ingester rc-sync`, a process of its own, so the kill is a real one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg

from core.settings import Settings
from tests.integration.rcsync_helpers import (
    API_KEY,
    Person,
    add_people,
    entry,
    eventually,
    known,
    rc_event,
    standin_server,
)
from tests.support import publish


def rc_sync_process(settings: Settings, url: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "KAFKA_IDEMPOTENT_PRODUCER": "false",
        "TOPIC_PREFIX": settings.topic_prefix,
        "ENVIRONMENT": "dev",
        "RC_SYNC_GROUP": f"rc-sync-{settings.topic_prefix.rstrip('.')}",
        "REVENUECAT_API_KEY": API_KEY,
        "REVENUECAT_API_URL": url,
        "RC_SYNC_METRICS_PORT": "0",
        "RC_SYNC_SWEEP_INTERVAL_S": "0",
        "CONSUMER_BATCH_WAIT_MS": "50",
        "CONSUMER_SESSION_TIMEOUT_MS": "1000",
        "CONSUMER_HEARTBEAT_INTERVAL_MS": "200",
        "SHUTDOWN_DEADLINE_S": "5",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingester.cli", "rc-sync"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def open_intents(pool: asyncpg.Pool) -> int:
    found: int = await pool.fetchval("SELECT count(*) FROM ingest_rc_sync WHERE intent IS NOT NULL")
    return found


async def test_a_call_cut_by_sigkill_is_one_change(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    ada = Person("u_rc_ada", "ada@example.com").in_sync()
    await add_people(
        pool, [Person("u_rc_ada", ada.email, {**ada.known, "$email": entry("old@x.io")})]
    )
    bootstrap = settings.kafka_bootstrap_servers or ""
    await publish(bootstrap, settings.topic_prefix, [rc_event("u_rc_ada", key="k")])

    async with standin_server() as server:
        standin = server.standin
        standin.hold()  # saved by RevenueCat, answer kept back
        first = rc_sync_process(settings, server.url, tmp_path)
        try:
            await standin.wait_until(lambda: len(standin.received) == 1, timeout_s=60)
        finally:
            first.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
        assert await open_intents(pool) == 1  # written before the call, never closed
        standin.release()  # the answer goes to a dead connection

        second = rc_sync_process(settings, server.url, tmp_path)
        try:
            await standin.wait_until(lambda: len(standin.received) == 2, timeout_s=60)
            await eventually(lambda: _closed(pool))
            # Behind the event on its partition: answered means the event was committed past.
            await add_people(pool, [Person("u_rc_probe", "probe@example.com")])
            await publish(bootstrap, settings.topic_prefix, [rc_event("u_rc_probe", key="k")])
            await standin.wait_until(lambda: len(standin.received) == 3, timeout_s=60)
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(second.wait, 30) == 0

    calls = [r for r in standin.received if r.app_user_id == "u_rc_ada"]
    assert len(calls) == 2  # the cut call and its re-send, nothing more
    (sent,) = standin.sent("u_rc_ada", "$email")  # the very same value and updated_at_ms
    assert sent[0] == "ada@example.com"
    assert [a for a in standin.applied if a[0] == "u_rc_ada"] == [
        ("u_rc_ada", "$email", "ada@example.com", sent[1])
    ]
    assert (await known(pool, "u_rc_ada"))["$email"] == {"value": sent[0], "updated_at_ms": sent[1]}


async def _closed(pool: asyncpg.Pool) -> bool:
    return await open_intents(pool) == 0
