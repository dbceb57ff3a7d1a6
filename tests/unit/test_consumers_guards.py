"""The rolling poison-flood guard and the loop's liveness, driven by hand-fed clocks."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from consumers.flood import FloodGuard, PoisonFlood, Tally, source_key
from consumers.liveness import Liveness
from consumers.policies import FloodPolicy

# (seconds, {source: (records, dead)})
Batch = tuple[float, dict[str, tuple[int, int]]]


def guard(sources: tuple[str, ...] = ("kit", "app")) -> FloodGuard:
    return FloodGuard(
        FloodPolicy(max_share=0.5, min_dead=3, window_records=1000, window_s=60.0, min_records=100),
        sources,
    )


def feed(g: FloodGuard, batches: list[Batch]) -> list[frozenset[str] | str]:
    """What each batch came to: the sources flooding, or "hold"."""
    seen: list[frozenset[str] | str] = []
    for at, batch in batches:
        try:
            seen.append(g.check(at, {s: Tally(*c) for s, c in batch.items()}))
        except PoisonFlood:
            seen.append("hold")
    return seen


NONE: frozenset[str] = frozenset()
KIT = frozenset({"kit"})


@pytest.mark.parametrize(
    ("batches", "verdicts"),
    [
        pytest.param([(0, {"kit": (4, 3)})], [NONE], id="cold start: 3 poison and 1 good"),
        pytest.param(
            [(t, {"kit": (1, 1)}) for t in range(5)], [NONE] * 5, id="low traffic: 5 dead singles"
        ),
        pytest.param([(0, {"kit": (100, 51)})], [KIT], id="100 records, 51 dead"),
        pytest.param([(0, {"kit": (100, 50)})], [NONE], id="exactly the share is not above it"),
        pytest.param([(0, {"kit": (99, 99)})], [NONE], id="one record short of the minimum"),
        pytest.param(
            [(0, {"kit": (60, 40)}), (1, {"kit": (60, 40)})], [NONE, KIT], id="over two batches"
        ),
        pytest.param(
            [(0, {"kit": (100, 60), "app": (500, 0)})],
            [KIT],
            id="per source: the other's good records do not dilute it",
        ),
        pytest.param(
            [(0, {"kit": (900, 0)}), (1, {"kit": (100, 100)})], [NONE, NONE], id="diluted"
        ),
        pytest.param(
            [(0, {"kit": (1000, 0)}), (1, {"kit": (1000, 600)})],
            [NONE, KIT],
            id="the good batch left the record window",
        ),
        pytest.param(
            [(0, {"kit": (60, 40)}), (100, {"kit": (60, 40)})],
            [NONE, NONE],
            id="spread over more than the window's seconds",
        ),
        pytest.param(
            [(0, {"kit": (100, 60)}), (100, {"app": (10, 0)})],
            [KIT, NONE],
            id="the alert ends when the window expires",
        ),
        pytest.param(
            [(0, {"kit": (100, 60), "app": (100, 60)})], ["hold"], id="every source floods"
        ),
        pytest.param(
            [(0, {"kit": (100, 60)}), (1, {"app": (100, 60)})],
            [KIT, "hold"],
            id="every source floods, one after the other",
        ),
    ],
)
def test_flood_guard_per_source(batches: list[Batch], verdicts: list[object]) -> None:
    assert feed(guard(), batches) == verdicts


def test_a_one_source_consumer_holds_and_does_not_count_the_flood_batch() -> None:
    g = guard(("kit",))
    g.check(0, {"kit": Tally(60, 30)})
    for _ in range(2):
        with pytest.raises(PoisonFlood, match="kit: 90 of the last 120 records"):
            g.check(1, {"kit": Tally(60, 60)})


def test_the_gauge_follows_the_alert() -> None:
    g = guard(("kit", "app", "klaviyo"))

    def gauge() -> float | None:
        return REGISTRY.get_sample_value("consumer_poison_flood", {"source": "klaviyo"})

    g.check(0, {"klaviyo": Tally(200, 150)})
    assert gauge() == 1
    g.check(1, {"klaviyo": Tally(800, 0)})
    assert gauge() == 0


@pytest.mark.parametrize(
    ("declared", "topic", "key"),
    [
        pytest.param("kit", "p.ingest.kit.v1", "kit", id="declared"),
        pytest.param(None, "p.ingest.experiments.v1", "app", id="no header: the topic's source"),
        pytest.param("made-up", "staging-ingest.kit.v1", "kit", id="unhandled value"),
        pytest.param(None, "p.ingest.klaviyo.v1", "p.ingest.klaviyo.v1", id="unhandled topic"),
        pytest.param(None, "crm-events", "crm-events", id="someone else's topic"),
    ],
)
def test_the_window_a_record_counts_in(declared: str | None, topic: str, key: str) -> None:
    assert source_key(declared, topic, {"kit", "app"}) == key


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
