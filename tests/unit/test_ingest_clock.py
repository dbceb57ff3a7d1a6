"""The per-second arrival-time formatter says exactly what ``rfc3339`` says."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from contract.records import rfc3339
from ingest.clock import received_at


def exact(now: float) -> str:
    return rfc3339(datetime.fromtimestamp(now, UTC))


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(1_764_647_827.0, id="whole second"),
        pytest.param(1_764_647_827.123456, id="milliseconds cut, not rounded"),
        pytest.param(1_764_647_827.1239996, id="microseconds round up into the next ms"),
        pytest.param(1_764_647_827.9989999, id="just under the carry guard"),
        pytest.param(1_764_647_827.9999996, id="microseconds round up into the next second"),
        pytest.param(1_767_225_599.9999999, id="into the next year"),
        pytest.param(0.0005, id="epoch"),
    ],
)
def test_matches_rfc3339(now: float) -> None:
    assert received_at(now) == exact(now)


def test_matches_rfc3339_over_many_instants_in_and_across_seconds() -> None:
    rng = random.Random(11)
    base = 1_764_647_827
    for step in range(20_000):
        now = base + step // 5000 + rng.random()
        assert received_at(now) == exact(now), now
