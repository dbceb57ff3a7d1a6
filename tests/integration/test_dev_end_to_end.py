"""``ingester dev`` end to end, as a new user runs it: embedded servers, samples, rows, Ctrl-C.

Runs the real command in a scratch directory (its own embedded PostgreSQL and broker), posts
one signed sample per provider with ``ingester send-sample``, waits for the consumers to
change the rows, stops it, and checks that a killed run leaves nothing a second run trips on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from core.devstack import EmbeddedPostgres, free_port, remove_dir, terminate_pids
from core.settings import read_env_file
from ingester.samples import SAMPLE_EXPERIMENT, SAMPLE_USER_ID, SAMPLE_VARIANT

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
        CONSOLE_PORT=str(free_port()),
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
    broker = tmp_path / ".dev" / "tansu.pid"
    if broker.exists() and broker.read_text().strip().isdigit():
        terminate_pids([int(broker.read_text())], marker=b"tansu", first=signal.SIGKILL)
    pgdata = tmp_path / ".dev" / "pgdata"
    if pgdata.exists():
        EmbeddedPostgres(pgdata).stop_sync()
    remove_dir(tmp_path / ".dev")  # with the data a root run keeps outside it


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


def modes(workdir: Path) -> dict[Path, tuple[int, int]]:
    """(mode, owner) of the working dir and of its parent, a 0700 folder of this pytest
    session (the shared folders above are not watched: other runs on the machine may
    change them)."""
    return {p: (p.stat().st_mode, p.stat().st_uid) for p in (workdir, workdir.parent)}


async def test_dev_runs_samples_to_rows_and_stops_cleanly(workdir: Path) -> None:
    env = dev_env(workdir)
    # pytest's temp folders are 0700: as root this is the clone-in-/root case.
    before = modes(workdir)
    assert stat.S_IMODE(workdir.parent.stat().st_mode) == 0o700
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
    assert modes(workdir) == before, "no folder outside .dev changed mode or owner"
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


async def dev_once(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``ingester dev`` run to its end (it fails, or the test would wait forever)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ingester.cli", "dev"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


async def test_a_child_failing_at_start_stops_dev_with_its_name(workdir: Path) -> None:
    env = dev_env(workdir)
    env["CONSOLE_HOST"] = "192.0.2.1"  # TEST-NET-1: an address no machine here has
    done = await dev_once(workdir, env)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "ingester dev: console exited with code 1 while starting" in done.stderr
    assert not (workdir / ".dev" / "children.pid").exists()


async def test_a_port_another_program_holds_is_named(workdir: Path) -> None:
    env = dev_env(workdir)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("0.0.0.0", int(env["PORT"])))
        taken.listen()
        done = await dev_once(workdir, env)

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        f"ingester dev: port {env['PORT']} (PORT) is taken by {holder_name()} (pid"
        f" {os.getpid()}); stop it or set PORT to a free port"
    ]
    assert not (workdir / ".dev" / "children.pid").exists()


def holder_name() -> str:
    import psutil

    return str(psutil.Process(os.getpid()).name())


async def test_a_second_dev_is_refused_and_the_first_kept(workdir: Path) -> None:
    env = dev_env(workdir)
    first = await asyncio.to_thread(start_dev, workdir, env)
    output = Output(first)
    try:
        stack_file = workdir / ".dev" / "stack.env"
        before = (stack_file.read_text(), children(workdir))
        # Another terminal, same clone, other ports: it must not touch the first run.
        second_env = {**env, "PORT": str(free_port()), "CONSOLE_PORT": str(free_port())}
        second = await dev_once(workdir, second_env)

        assert second.returncode == 1
        (line,) = second.stderr.splitlines()
        assert line.startswith("ingester dev: already running in this clone (pid ")
        assert f"pid {first.pid}," in line
        assert f"ingest http://127.0.0.1:{env['PORT']}" in line
        assert (stack_file.read_text(), children(workdir)) == before
        stack = read_env_file(stack_file)
        async with httpx.AsyncClient() as client:
            ingest = await client.get(f"http://127.0.0.1:{env['PORT']}/healthz")
            console = await client.get(f"http://127.0.0.1:{env['CONSOLE_PORT']}/")
            logged_in = await client.get(
                f"http://127.0.0.1:{env['CONSOLE_PORT']}/",
                headers={"Authorization": f"Bearer {stack['CONSOLE_TOKEN']}"},
            )
        assert ingest.status_code == 200
        assert console.status_code == 401 and logged_in.status_code == 200
    finally:
        code = await asyncio.to_thread(stop, first)
    assert code == 0
    assert f"console:    http://127.0.0.1:{env['CONSOLE_PORT']}  (token " in output.text()
    assert "restarting" not in output.text()


class Output:
    """Drains the dev command's output in a thread (its children log there too: an unread
    pipe would fill and block them) and keeps it for assertions."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._pipe = proc.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed by stop()
            for raw in self._pipe:
                self.lines.append(raw.decode(errors="replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


def children(workdir: Path) -> dict[str, int]:
    """``{"ingest": pid, "consumer": pid}`` from the file ``ingester dev`` keeps current."""
    found = {}
    for line in (workdir / ".dev" / "children.pid").read_text().splitlines():
        name, _, pid = line.partition(" ")
        found[name] = int(pid)
    return found


async def restarted(workdir: Path, name: str, old_pid: int, timeout: float = 30.0) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(OSError, ValueError):
            pid = children(workdir).get(name)
            if pid is not None and pid != old_pid:
                return pid
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} was not restarted within {timeout:.0f} s")


async def send_events(
    client: httpx.AsyncClient, key: str, count: int, *, timeout: float = 30.0
) -> list[str]:
    """Post ``count`` impressions one by one, each retried until ingest answers 202 (it
    may be restarting). Returns the ids of the accepted events."""
    accepted = []
    deadline = asyncio.get_running_loop().time() + timeout
    for _ in range(count):
        event_id = str(uuid.uuid4())
        body = {"events": [{**IMPRESSION, "id": event_id, "occurred_at": now_text()}]}
        while True:
            with contextlib.suppress(httpx.TransportError):
                answer = await client.post(
                    "/events", json=body, headers={"Authorization": f"Bearer {key}"}
                )
                if answer.status_code == 202:
                    accepted.append(event_id)
                    break
                assert answer.status_code == 503, answer.text  # Kafka not reachable yet
            assert asyncio.get_running_loop().time() < deadline, "ingest never accepted"
            await asyncio.sleep(0.2)
    return accepted


IMPRESSION = {
    "type": "impression",
    "user_id": SAMPLE_USER_ID,
    "experiment": SAMPLE_EXPERIMENT,
    "variant": SAMPLE_VARIANT,
    "session_identifier": "dev-supervision",
    "page_url": "https://example.com/checkout",
}


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def applied(dsn: str, event_ids: list[str], timeout: float = 60.0) -> int:
    """How many of ``event_ids`` the consumers applied, waiting until all are or timeout
    (through a database restart: a refused connection is tried again)."""
    deadline = asyncio.get_running_loop().time() + timeout
    count = -1
    while True:
        with contextlib.suppress(OSError, asyncpg.CannotConnectNowError):
            conn = await asyncpg.connect(dsn)
            try:
                count = await conn.fetchval(
                    "SELECT count(*) FROM ingest_inbox WHERE event_id = ANY($1::text[])",
                    event_ids,
                )
            finally:
                await conn.close()
        if count == len(event_ids) or asyncio.get_running_loop().time() > deadline:
            return count
        await asyncio.sleep(0.2)


async def test_killed_children_restart_without_losing_an_accepted_event(workdir: Path) -> None:
    env = dev_env(workdir)
    proc = await asyncio.to_thread(start_dev, workdir, env)
    output = Output(proc)
    try:
        stack_env = read_env_file(workdir / ".dev" / "stack.env")
        first = children(workdir)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env['PORT']}") as client:
            key = stack_env["EVENTS_API_KEY"]
            accepted = await send_events(client, key, 15)

            os.kill(first["consumer"], signal.SIGKILL)
            accepted += await send_events(client, key, 15)  # accepted while it is down
            consumer = await restarted(workdir, "consumer", first["consumer"])

            os.kill(first["ingest"], signal.SIGKILL)
            accepted += await send_events(client, key, 15)  # retried until ingest is back
            ingest = await restarted(workdir, "ingest", first["ingest"])

        assert await applied(stack_env["DATABASE_URL"], accepted) == len(accepted)
        now = children(workdir)
        assert {"ingest": now["ingest"], "consumer": now["consumer"]} == {
            "ingest": ingest,
            "consumer": consumer,
        }
    finally:
        code = await asyncio.to_thread(stop, proc)
    log = output.text()
    assert f"consumer (pid {first['consumer']}) was killed by SIGKILL" in log
    assert f"ingest (pid {first['ingest']}) was killed by SIGKILL" in log
    assert code == 0


async def test_dead_servers_are_restarted_and_the_database_kept(workdir: Path) -> None:
    env = dev_env(workdir)
    proc = await asyncio.to_thread(start_dev, workdir, env)
    output = Output(proc)
    try:
        stack_env = read_env_file(workdir / ".dev" / "stack.env")
        dsn = stack_env["DATABASE_URL"]
        first = children(workdir)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{env['PORT']}") as client:
            key = stack_env["EVENTS_API_KEY"]
            before = await send_events(client, key, 5)
            assert await applied(dsn, before) == len(before)

            # PostgreSQL: restarted on its data; ingest never needed it.
            pid_file = workdir / ".dev" / "pgdata" / "postmaster.pid"
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            while_db_down = await send_events(client, key, 5)
            assert await applied(dsn, while_db_down) == len(while_db_down)

            # The broker: restarted empty, with the topics and both children.
            broker = int((workdir / ".dev" / "tansu.pid").read_text())
            os.kill(broker, signal.SIGKILL)
            await restarted(workdir, "consumer", first["consumer"])
            after = await send_events(client, key, 5)

        assert await applied(dsn, after) == len(after)
        kept = before + while_db_down
        assert await applied(dsn, kept, timeout=0) == len(kept), "the database is kept"
    finally:
        code = await asyncio.to_thread(stop, proc)
    log = output.text()
    assert "PostgreSQL stopped unexpectedly; restarting it on its data" in log
    assert "the Kafka broker was killed by SIGKILL" in log
    assert "in-memory storage, so everything it held is lost" in log
    assert "the broker is back with empty topics" in log
    assert code == 0
