"""One ``ingester dev`` per clone, and ports: the lock names the run that holds it, a taken
default port moves to a free one, a taken port set on purpose is refused naming its holder."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.devstack import StackError
from ingester.devguard import AlreadyRunning, Port, RunLock, choose_ports

PORTS = [Port("PORT", 8000, 8000), Port("CONSOLE_PORT", 9999, 8090, "127.0.0.1")]


def test_a_second_lock_is_refused_naming_the_first(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path / "dev.lock"), RunLock(tmp_path / "dev.lock")
    first.acquire("pid 42, started 12:00:00")
    first.describe("pid 42, started 12:00:00, ingest http://127.0.0.1:8000")

    with pytest.raises(AlreadyRunning) as refused:
        second.acquire("pid 43")
    assert str(refused.value) == (
        "already running in this clone (pid 42, started 12:00:00, ingest"
        " http://127.0.0.1:8000); stop it first (Ctrl-C in its terminal) or use another clone"
    )
    first.release()
    second.acquire("pid 43")  # released, so free again
    second.release()


@pytest.mark.parametrize(
    ("taken", "chosen", "moved"),
    [
        pytest.param(set(), {"PORT": 8000, "CONSOLE_PORT": 9999}, [], id="all free"),
        pytest.param(
            {8000},
            {"PORT": 4321, "CONSOLE_PORT": 9999},
            ["port 8000 (PORT) is taken by nginx (pid 7); using 4321 instead"],
            id="a default taken moves",
        ),
    ],
)
def test_ports(taken: set[int], chosen: dict[str, int], moved: list[str]) -> None:
    result = choose_ports(
        PORTS, taken=lambda p, h: p in taken, pick=lambda: 4321, who=lambda p: "nginx (pid 7)"
    )
    assert result == (chosen, moved)


def test_a_port_set_on_purpose_and_taken_is_refused_naming_its_holder() -> None:
    with pytest.raises(StackError, match=r"^port 9999 \(CONSOLE_PORT\) is taken by nginx"):
        choose_ports(PORTS, taken=lambda p, h: p == 9999, who=lambda p: "nginx (pid 7)")
