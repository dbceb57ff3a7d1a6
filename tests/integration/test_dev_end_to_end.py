"""``ingester dev`` end to end, as a new user runs it: embedded servers, samples, rows, Ctrl-C.

Runs the real command in a scratch directory (its own embedded PostgreSQL and broker), posts
one signed sample per provider with ``ingester send-sample``, waits for the consumers to
change the rows, stops it, and checks that a killed run leaves nothing a second run trips on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from core.devstack import free_port
from core.settings import read_env_file

pytestmark = pytest.mark.slow

READY = b"webhook ingester is running"
SAMPLES = ("revenuecat", "klaviyo-flow", "klaviyo", "kit", "events")


def dev_env(tmp_path: Path) -> dict[str, str]:
    # The dev command must bring its own servers: drop any the test session was pointed at.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX")
    }
    env.update(
        PORT=str(free_port()),
        CONSUMER_METRICS_PORT=str(free_port()),
        PENDING_RETRY_INTERVAL_S="1",
        CONSUMER_BATCH_WAIT_MS="50",
        SHUTDOWN_DEADLINE_S="5",
        HOME=str(os.environ.get("HOME", tmp_path)),
    )
    return env


def start_dev(cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingester.cli", "dev"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen = b""
    while READY not in seen:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"ingester dev exited before it was ready:\n{seen.decode()}")
        seen += line
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=40)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    # Whatever happened, leave no server running.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from ingester.dev import _kill_stale_children; _kill_stale_children()",
        ],
        cwd=tmp_path,
        check=False,
    )
    pgdata = tmp_path / ".dev" / "pgdata"
    if (pgdata / "postmaster.pid").exists():
        from core.devstack import EmbeddedPostgres

        EmbeddedPostgres(pgdata).stop_sync()


async def wait_for(dsn: str, query: str, timeout: float = 30.0) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await conn.fetchval(query)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for: {query}")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def test_dev_runs_samples_to_rows_and_stops_cleanly(workdir: Path) -> None:
    env = dev_env(workdir)
    proc = await asyncio.to_thread(start_dev, workdir, env)
    try:
        stack_env = read_env_file(workdir / ".dev" / "stack.env")
        dsn = stack_env["DATABASE_URL"]
        for provider in SAMPLES:
            sent = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "ingester.cli", "send-sample", provider],
                cwd=workdir, env=env, capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert sent.returncode == 0, (provider, sent.stdout, sent.stderr)
            assert sent.stdout.split()[0] in ("200", "202"), (provider, sent.stdout)

        assert await wait_for(
            dsn,
            "SELECT revenue_cat_attributes::jsonb ? '$email' FROM user_revenue_cat_ids"
            " WHERE revenue_cat_id = 'u_rc_sample_1'",
        )
        assert await wait_for(dsn, "SELECT count(*) FROM user_klaviyo_profiles")
        assert await wait_for(
            dsn, "SELECT kit_state FROM user_profiles WHERE email = 'sample@example.com'"
            " AND kit_subscriber_id IS NOT NULL",
        )  # fmt: skip
        assert await wait_for(dsn, "SELECT count(*) FROM user_experiment_participation")
        assert await wait_for(dsn, "SELECT count(*) FROM conversions")
        # the consent sample targets the profile the flow sample created: applied directly
        # or after the periodic pending retry
        assert await wait_for(
            dsn, "SELECT count(*) FROM user_notification_settings s"
            " JOIN user_klaviyo_profiles p USING (user_id) WHERE s.channel = 'email'",
        )  # fmt: skip
    finally:
        code = await asyncio.to_thread(stop, proc)
    assert code == 0
    assert not (workdir / ".dev" / "pgdata" / "postmaster.pid").exists()
    assert not (workdir / ".dev" / "tansu.pid").exists()
    assert not (workdir / ".dev" / "children.pid").exists()


async def test_second_dev_starts_after_a_killed_one(workdir: Path) -> None:
    env = dev_env(workdir)
    first = await asyncio.to_thread(start_dev, workdir, env)
    # SIGKILL: no cleanup at all; its server, broker and children are orphaned.
    await asyncio.to_thread(stop, first, signal.SIGKILL)

    second = await asyncio.to_thread(start_dev, workdir, env)
    health = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ingester.cli", "send-sample", "kit"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    code = await asyncio.to_thread(stop, second)

    assert health.returncode == 0, health.stdout + health.stderr
    assert code == 0
    assert not (workdir / ".dev" / "pgdata" / "postmaster.pid").exists()
