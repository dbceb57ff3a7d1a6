"""Processes as the product runs them: the servers, ``ingester serve`` and ``ingester
consume`` as children with environment variables, and the faults done to them.

Every child writes its log to a file of the run's log directory, which the secrets-and-PII
check reads afterwards. Everything started here is stopped by :meth:`Harness.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil

from core import devstack, migrate
from core.settings import Settings
from core.topics import create_topics
from tests.faults.workload import ENVIRONMENT, SECRETS

REPO = Path(__file__).resolve().parents[2]
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR")
PARTITIONS = 6
# Short group timings, as the runner tests use: a SIGKILLed member is replaced in ~1 s.
FAST_GROUP = {"CONSUMER_SESSION_TIMEOUT_MS": "1500", "CONSUMER_HEARTBEAT_INTERVAL_MS": "300"}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.05)


def frozen_group(pid: int) -> list[psutil.Process]:
    """A server process and its children (PostgreSQL's backends): SIGSTOP them all."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def signal_all(procs: Iterable[psutil.Process], signum: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signum)


@dataclass(slots=True)
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    port: int  # HTTP port (serve) or metrics port (consume)
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass(slots=True)
class Harness:
    """One scenario's servers and processes. The servers are private (started here) unless
    DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS name real ones, which cannot be frozen or killed."""

    workdir: Path
    database_url: str
    bootstrap: str
    prefix: str
    postgres: devstack.EmbeddedPostgres | None = None
    broker: devstack.TansuBroker | None = None
    children: list[Child] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url,
            kafka_bootstrap_servers=self.bootstrap,
            kafka_idempotent_producer=False,
            topic_prefix=self.prefix,
            topic_partitions=PARTITIONS,
            environment=ENVIRONMENT,
        )

    def env(self, **values: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _INHERITED}
        env.update(SECRETS)
        env.update(
            DATABASE_URL=self.database_url,
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            KAFKA_IDEMPOTENT_PRODUCER="true" if self.broker is None else "false",
            TOPIC_PREFIX=self.prefix,
            TOPIC_PARTITIONS=str(PARTITIONS),
            ENVIRONMENT=ENVIRONMENT,
            CONSUMER_GROUP=f"faults-{self.prefix.rstrip('.')}",
            CONSUMER_BATCH_WAIT_MS="50",
            PENDING_RETRY_INTERVAL_S="2",
            SHUTDOWN_DEADLINE_S="10",
            PRODUCE_TIMEOUT_S="2",
            LOG_LEVEL="INFO",
            **FAST_GROUP,
        )
        env.update(self.extra_env)
        env.update(values)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], port: int) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ingester.cli", *argv],
                env=env,
                cwd=REPO,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )
        child = Child(name, proc, port, log)
        self.children.append(child)
        return child

    def serve(self, name: str = "serve", port: int | None = None) -> Child:
        port = port or devstack.free_port()
        child = self._spawn(name, ["serve"], self.env(PORT=str(port)), port)
        wait_for(
            lambda: _answers(f"http://127.0.0.1:{port}/readyz") or not child.alive(),
            60,
            f"{name} ready",
        )
        assert child.alive(), f"{name} exited: {child.log.read_text()[-2000:]}"
        return child

    def consume(self, name: str, *, only: str | None = None, **env: str) -> Child:
        """An ``ingester consume`` member (of the streams in ``only``, when given)."""
        port = devstack.free_port()
        argv = ["consume", *(["--only", only] if only else [])]
        return self._spawn(name, argv, self.env(CONSUMER_METRICS_PORT=str(port), **env), port)

    def cli(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        """An ``ingester`` verb run to completion, as an operator would."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "ingester.cli", *argv],
            env=self.env(**env),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        with (self.log_dir / "cli.log").open("a") as sink:
            sink.write(done.stdout + done.stderr)
        return done

    def kill(self, child: Child, signum: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    def kill_pid(self, pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def stop(self, child: Child, timeout: float = 30.0) -> int:
        if child.alive():
            self.kill(child, signal.SIGTERM)
        try:
            return child.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(child, signal.SIGKILL)
            return child.proc.wait(timeout=10)

    def postgres_processes(self) -> list[psutil.Process]:
        assert self.postgres is not None
        pid_file = self.postgres.data_dir / "postmaster.pid"
        return frozen_group(int(pid_file.read_text().split()[0]))

    def broker_pid(self) -> int:
        assert self.broker is not None and self.broker._proc is not None
        return self.broker._proc.pid

    async def create_topics(self) -> None:
        await create_topics(self.settings())

    def close(self) -> None:
        for child in reversed(self.children):
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.proc.wait(timeout=10)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                signal_all(self.postgres_processes(), signal.SIGCONT)
        if self.broker is not None:
            with contextlib.suppress(ProcessLookupError, AssertionError):
                os.kill(self.broker_pid(), signal.SIGCONT)
            self.broker.stop_sync()
        if self.postgres is not None:
            self.postgres.stop_sync()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


async def start(workdir: Path, real: Settings, prefix: str) -> Harness:
    """Private servers (or the real ones named in ``real``), a migrated fresh database and
    the topics."""
    postgres = broker = None
    database_url = real.database_url
    bootstrap = real.kafka_bootstrap_servers
    if not database_url:
        # Durable (fsync on): a SIGKILLed server must keep what it acknowledged.
        postgres = devstack.EmbeddedPostgres(workdir / "pgdata")
        await postgres.start()
        database_url = postgres.dsn
    if not bootstrap:
        broker = devstack.TansuBroker()
        await broker.start()
        bootstrap = broker.bootstrap
    harness = Harness(workdir, database_url, bootstrap, prefix, postgres, broker)
    harness.database_url = await fresh_database(database_url, prefix.rstrip("."))
    await migrate.migrate(harness.database_url, migrate.default_dir())
    await harness.create_topics()
    return harness


async def fresh_database(server_dsn: str, name: str) -> str:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, query = server_dsn.partition("?")
    root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{root}/{name}" + (f"?{query}" if query else "")


async def metric(port: int, name: str, **labels: str) -> float | None:
    """One sample of a child's /metrics (summed over label sets matching ``labels``)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    except httpx.HTTPError:
        return None
    total = None
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name = head.split("{", 1)[0]
        if metric_name != name or not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        total = (total or 0.0) + float(value)
    return total


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
