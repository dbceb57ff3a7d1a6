"""The rolling poison-flood guard and the loop's liveness, driven by hand-fed clocks."""

from __future__ import annotations

import pytest

from consumers.flood import FloodGuard, PoisonFlood
from consumers.liveness import Liveness
from consumers.policies import FloodPolicy

Batch = tuple[float, int, int]  # (seconds, records, dead)


def guard(window_records: int = 100, window_s: float = 60.0) -> FloodGuard:
    return FloodGuard(
        FloodPolicy(max_share=0.5, min_dead=3, window_records=window_records, window_s=window_s)
    )


def feed(g: FloodGuard, batches: list[Batch]) -> int | None:
    """Index of the batch that raised PoisonFlood, or None."""
    for index, (at, records, dead) in enumerate(batches):
        try:
            g.check(at, records, dead)
        except PoisonFlood:
            return index
    return None


@pytest.mark.parametrize(
    ("batches", "flood_at"),
    [
        pytest.param([(0, 1, 1), (1, 1, 1), (2, 1, 1)], 2, id="low traffic: 3 of 3 singles"),
        pytest.param([(0, 1, 1), (1, 1, 0), (2, 1, 1)], None, id="2 dead never reach the minimum"),
        pytest.param([(0, 5, 4)], 0, id="one batch of 5 with 4 dead"),
        pytest.param([(0, 10, 5)], None, id="exactly the share is not above it"),
        pytest.param([(0, 90, 0), (1, 4, 3)], None, id="diluted by the good records before"),
        pytest.param(
            [(0, 1, 1), (100, 1, 1), (200, 1, 1)], None, id="spread over more than the window"
        ),
        pytest.param(
            [(0, 100, 0), (1, 2, 2), (2, 2, 2)],
            None,
            id="100 good records still in the window",
        ),
        pytest.param(
            [(0, 100, 0), (1, 100, 46), (2, 10, 10)],
            2,
            id="the good batch left the record window",
        ),
        pytest.param([(0, 500, 300)], 0, id="a batch larger than the window is the window"),
    ],
)
def test_flood_guard_over_a_rolling_window(batches: list[Batch], flood_at: int | None) -> None:
    assert feed(guard(), batches) == flood_at


def test_a_flood_batch_is_not_counted_so_the_next_check_sees_the_same_window() -> None:
    g = guard()
    g.check(0, 1, 1)
    g.check(1, 1, 1)
    for _ in range(2):
        with pytest.raises(PoisonFlood, match="3 of the last 3 records"):
            g.check(2, 1, 1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("in_hand", "lag", "silent_s", "stalled"),
    [
        pytest.param(False, 0, 500.0, False, id="idle for long: nothing waits"),
        pytest.param(True, 0, 500.0, True, id="batch in hand, no progress"),
        pytest.param(False, 7, 500.0, True, id="lag, no progress"),
        pytest.param(True, 7, 100.0, False, id="within the stall budget"),
    ],
)
def test_liveness(in_hand: bool, lag: int, silent_s: float, stalled: bool) -> None:
    clock = Clock()
    live = Liveness(120.0, clock)
    live.batch_in_hand, live.lag = in_hand, lag
    clock.now = silent_s
    assert live.stalled() is stalled
    live.beat()
    assert live.stalled() is False


def test_liveness_off_when_stall_is_zero() -> None:
    clock = Clock()
    live = Liveness(0.0, clock)
    live.batch_in_hand = True
    clock.now = 1e6
    assert live.stalled() is False
