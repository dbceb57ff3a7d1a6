"""Keep the children of ``ingester dev`` running: a crashed one is named and restarted.

A child that exits (a crash, an OOM kill, someone's ``kill -9``) is restarted after a
delay that doubles with each crash in a row (1 s, 2 s, 4 s ... at most 30 s); a child that
ran for :data:`STABLE_AFTER_S` before it crashed starts over at 1 s. After
:data:`MAX_RESTARTS` restarts in a row that each crashed sooner, the supervisor gives up
(a port in use, a broken install: restarting would not help).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 30.0
MAX_RESTARTS = 5

Spawn = Callable[[str], "subprocess.Popen[bytes]"]


def describe_exit(code: int) -> str:
    """``-9`` -> ``was killed by SIGKILL``; ``3`` -> ``exited with code 3``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def restart_delay(crashes: int) -> float:
    """Seconds before the restart that follows ``crashes`` crashes in a row (>= 1)."""
    return float(min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** max(0, crashes - 1)))


class GaveUp(RuntimeError):
    """A child crashed again after :data:`MAX_RESTARTS` restarts, each soon after its start."""


@dataclass(slots=True)
class Child:
    """One supervised process: ``name`` in the log, ``verb`` of ``ingester`` to run."""

    name: str
    verb: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    crashes: int = 0  # in a row
    restart_at: float | None = None


@dataclass(slots=True)
class Supervisor:
    children: Sequence[Child]
    spawn: Spawn
    say: Callable[[str], None]
    on_spawn: Callable[[Sequence[Child]], None] = lambda children: None
    clock: Callable[[], float] = time.monotonic

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)
        self.on_spawn(self.children)

    def _start(self, child: Child) -> None:
        child.proc = self.spawn(child.verb)
        child.started_at = self.clock()
        child.restart_at = None

    def check(self) -> None:
        """Notice exited children and restart the ones whose delay is over; call often."""
        now = self.clock()
        spawned = False
        for child in self.children:
            if child.restart_at is None:
                code = child.proc.poll() if child.proc is not None else None
                if code is None:
                    continue
                ran = now - child.started_at
                child.crashes = 1 if ran >= STABLE_AFTER_S else child.crashes + 1
                if child.crashes > MAX_RESTARTS:
                    raise GaveUp(
                        f"{child.name} {describe_exit(code)} {child.crashes} times in a row,"
                        f" each within {STABLE_AFTER_S:.0f} s of its start; giving up"
                    )
                delay = restart_delay(child.crashes)
                child.restart_at = now + delay
                self.say(
                    f"{child.name} (pid {child.proc.pid if child.proc else '?'})"
                    f" {describe_exit(code)} after {ran:.1f} s; restarting it in {delay:.0f} s"
                )
            if child.restart_at is not None and now >= child.restart_at:
                self._start(child)
                spawned = True
                self.say(f"{child.name} restarted (pid {child.proc.pid if child.proc else '?'})")
        if spawned:
            self.on_spawn(self.children)

    def restart_all(self, deadline_s: float) -> None:
        """Stop every child and start it again at once (after the broker was replaced)."""
        self.stop_all(deadline_s)
        for child in self.children:
            child.crashes = 0
        self.start_all()

    def stop_all(self, deadline_s: float) -> None:
        """SIGTERM every running child, SIGKILL whichever outlives ``deadline_s``."""
        procs = [c.proc for c in self.children if c.proc is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + deadline_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children if c.proc is not None}
