"""The ingest part's headline figures, computed from one run's scenario results."""

from __future__ import annotations

from typing import Any

import pytest

from bench.ingest_bench import figures


def scenario(name: str, **values: Any) -> dict[str, Any]:
    return {"scenario": name, **values}


RESULTS = [
    scenario("GET /healthz", requests_per_s=20_000.0, ratio_to_healthz=1.0),
    scenario("POST /events", requests_per_s=400.0, records_per_s=20_000.0),
    scenario("POST /webhooks/revenuecat", requests_per_s=7_000.0, ratio_to_healthz=0.35),
]
SLOPE = {
    "latency_ms": [{"p50": 80.0, "p99": 100.0}, {"p50": 250.0, "p99": 500.0}],
    "kib_per_extra_inflight_request": 210.5,
}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("rc_vs_healthz", 0.35, id="revenuecat over healthz"),
        pytest.param("events_vs_producer", 0.5, id="events over the bare producer"),
        pytest.param("events_p99_over_p50_at_128", 2.0, id="p99 over p50 at 4x connections"),
        pytest.param("events_kib_per_inflight", 210.5, id="the 32 -> 128 memory slope"),
    ],
)
def test_each_figure(key: str, expected: float) -> None:
    assert figures(RESULTS, SLOPE, {"records_per_s": 40_000.0})[key] == expected


def test_a_baseline_that_published_nothing_gives_null_not_a_division_error() -> None:
    assert figures(RESULTS, SLOPE, {"records_per_s": 0.0})["events_vs_producer"] is None
