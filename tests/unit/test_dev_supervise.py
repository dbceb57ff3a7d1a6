"""The restart policy of ``ingester dev``, driven step by step with a hand-moved clock."""

from __future__ import annotations

import subprocess
from typing import cast

import pytest

from ingester.supervise import (
    MAX_RESTARTS,
    STABLE_AFTER_S,
    Child,
    GaveUp,
    Supervisor,
    describe_exit,
    restart_delay,
)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        pytest.param(-9, "was killed by SIGKILL", id="kill -9"),
        pytest.param(-15, "was killed by SIGTERM", id="sigterm"),
        pytest.param(1, "exited with code 1", id="error exit"),
        pytest.param(0, "exited with code 0", id="clean exit is still an exit"),
        pytest.param(-200, "was killed by signal 200", id="unknown signal number"),
    ],
)
def test_describe_exit(code: int, text: str) -> None:
    assert describe_exit(code) == text


@pytest.mark.parametrize(
    ("crashes", "delay"),
    [
        pytest.param(1, 1.0, id="first crash"),
        pytest.param(2, 2.0, id="second in a row"),
        pytest.param(4, 8.0, id="doubles"),
        pytest.param(10, 30.0, id="capped"),
    ],
)
def test_restart_delay(crashes: int, delay: float) -> None:
    assert restart_delay(crashes) == delay


class FakeProc:
    """Stands in for a child process: exits when the test says so."""

    pids = iter(range(1000, 100000))

    def __init__(self) -> None:
        self.pid = next(self.pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.returncode = -sig  # dies at once

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None, "waits only for a signalled process"
        return self.returncode


class Harness:
    def __init__(self) -> None:
        self.now = 0.0
        self.said: list[str] = []
        self.spawned: list[tuple[str, FakeProc]] = []
        self.written: list[dict[str, int]] = []
        self.supervisor = Supervisor(
            [Child("ingest", "serve"), Child("consumer", "consume")],
            spawn=self.spawn,
            say=self.said.append,
            on_spawn=lambda children: self.written.append(self.supervisor.pids()),
            clock=lambda: self.now,
        )

    def spawn(self, verb: str) -> subprocess.Popen[bytes]:
        proc = FakeProc()
        self.spawned.append((verb, proc))
        return cast("subprocess.Popen[bytes]", proc)

    def proc(self, name: str) -> FakeProc:
        (child,) = [c for c in self.supervisor.children if c.name == name]
        return cast(FakeProc, child.proc)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.supervisor.check()


def test_a_killed_child_is_named_and_restarted_after_the_delay() -> None:
    h = Harness()
    h.supervisor.start_all()
    first = h.proc("consumer")

    first.returncode = -9
    h.advance(5)
    assert h.said == [
        f"consumer (pid {first.pid}) was killed by SIGKILL after 5.0 s; restarting it in 1 s"
    ]
    assert h.proc("consumer") is first, "not before the delay"

    h.advance(1)
    second = h.proc("consumer")
    assert second is not first
    assert h.said[-1] == f"consumer restarted (pid {second.pid})"
    assert h.written[-1] == {"ingest": h.proc("ingest").pid, "consumer": second.pid}
    assert [verb for verb, _ in h.spawned] == ["serve", "consume", "consume"]


def test_quick_crashes_back_off_and_a_stable_run_starts_over() -> None:
    h = Harness()
    h.supervisor.start_all()
    delays = []
    for _ in range(3):
        h.proc("ingest").returncode = 1
        h.advance(0.5)
        delays.append(h.said[-1].rsplit(" in ", 1)[1])
        h.advance(60)  # past any delay: restarted
    assert delays == ["1 s", "2 s", "4 s"]

    h.advance(STABLE_AFTER_S)
    h.proc("ingest").returncode = 1
    h.advance(0.1)
    assert h.said[-1].endswith("restarting it in 1 s")


def test_gives_up_on_a_child_that_keeps_crashing_at_start() -> None:
    h = Harness()
    h.supervisor.start_all()
    for _ in range(MAX_RESTARTS):
        h.proc("ingest").returncode = 1
        h.advance(0.1)
        h.advance(60)

    h.proc("ingest").returncode = 1
    with pytest.raises(GaveUp, match="ingest exited with code 1 6 times in a row"):
        h.advance(0.1)


def test_restart_all_replaces_every_child() -> None:
    h = Harness()
    h.supervisor.start_all()
    before = [proc for _, proc in h.spawned]

    h.supervisor.restart_all(deadline_s=1)

    assert [proc.returncode for proc in before] == [-15, -15]
    after = h.supervisor.pids()
    assert set(after) == {"ingest", "consumer"}
    assert not set(after.values()) & {proc.pid for proc in before}
    assert h.written[-1] == after
