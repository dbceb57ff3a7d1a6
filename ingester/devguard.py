"""What keeps ``ingester dev`` from trampling another run, or another program:

- **the run's lock** (``.dev/dev.lock``): held (``flock``) for as long as a run lives, so a
  second ``make dev`` in the same clone refuses in one line naming the first, instead of
  taking its pid files for a crash's leftovers. The kernel releases it when the process
  dies, however it dies, so a killed run never blocks the next one;
- **the ports**: a port another program holds is named with that program (when the system
  says who it is). A port left at its default moves to a free one, which is printed; a port
  set on purpose is kept, and the run refuses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.devstack import StackError, free_port
from core.settings import Settings


class AlreadyRunning(StackError):
    """Another ``ingester dev`` holds this clone's lock."""


class RunLock:
    """The lock of one ``ingester dev`` run, and a line describing it for whoever finds it
    taken (its pid, start and URLs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, description: str) -> None:
        """Take the lock, or raise :class:`AlreadyRunning` naming the run that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = self.path.read_text().strip() or "another ingester dev"
            raise AlreadyRunning(
                f"already running in this clone ({holder}); stop it first (Ctrl-C in its"
                " terminal) or use another clone"
            ) from None
        self._fd = fd
        self.describe(description)

    def describe(self, description: str) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, description.encode() + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the lock
            self._fd = None


@dataclass(frozen=True, slots=True)
class Port:
    """One port a dev run serves on: its variable, the value asked for, its default and
    the address it is bound to."""

    variable: str
    value: int
    default: int
    host: str = "0.0.0.0"  # noqa: S104 - what ingest and the consumers' health server bind


def dev_ports(settings: Settings) -> list[Port]:
    """The ports a dev run serves on: ingest, the consumers' health, the console."""
    defaults = Settings()
    return [
        Port("PORT", settings.port, defaults.port),
        Port(
            "CONSUMER_METRICS_PORT", settings.consumer_metrics_port, defaults.consumer_metrics_port
        ),
        Port("CONSOLE_PORT", settings.console_port, defaults.console_port, settings.console_host),
    ]


def in_use(port: int, host: str) -> bool:
    """Whether binding ``host``:``port`` fails because something holds it (any other
    failure, such as an address this machine does not have, is left to the server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def holder(port: int) -> str:
    """Who listens on ``port``: ``python3 (pid 4242)``, or ``another program``."""
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    break
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
    return "another program"


def choose_ports(
    ports: Sequence[Port],
    *,
    taken: Callable[[int, str], bool] = in_use,
    pick: Callable[[], int] = free_port,
    who: Callable[[int], str] = holder,
) -> tuple[dict[str, int], list[str]]:
    """The port of each variable, and a line for each one that moved. A taken port set on
    purpose raises :class:`StackError` naming the program that holds it."""
    chosen: dict[str, int] = {}
    moved = []
    for port in ports:
        value = port.value
        if taken(value, port.host):
            if value != port.default:
                raise StackError(
                    f"port {value} ({port.variable}) is taken by {who(value)}; stop it or set"
                    f" {port.variable} to a free port"
                )
            value = pick()
            moved.append(
                f"port {port.default} ({port.variable}) is taken by {who(port.default)};"
                f" using {value} instead"
            )
        chosen[port.variable] = value
    return chosen, moved
