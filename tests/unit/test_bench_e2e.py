"""The end-to-end benchmark's open-loop schedule: the offered rate, the mix, the warm-up."""

from __future__ import annotations

import pytest

from bench.e2e_bench import E2EOptions, schedule


@pytest.mark.parametrize(
    ("rate", "duration", "warmup"),
    [
        pytest.param(2000.0, 2.0, 1.0, id="2,000 ev/s"),
        pytest.param(500.0, 4.0, 0.0, id="500 ev/s, no warm-up"),
    ],
)
def test_schedule_offers_the_rate_half_and_half(
    rate: float, duration: float, warmup: float
) -> None:
    options = E2EOptions(rate=rate, duration=duration, warmup=warmup, backlog=0, timeout=1)
    plan = schedule(options)
    offsets = [at for at, _, _ in plan]
    assert offsets == sorted(offsets)
    assert offsets[-1] < warmup + duration
    measured = [sent for _, _, sent in plan if sent.measured]
    events = {"app": 0, "kit": 0}
    for sent in measured:
        for source, ids in sent.ids.items():
            events[source] += len(ids)
    assert events["app"] == events["kit"]
    assert sum(events.values()) == pytest.approx(rate * duration, rel=0.05)
    assert all(sent.at >= warmup for sent in measured)
    ids = [i for _, _, sent in plan for ids in sent.ids.values() for i in ids]
    assert len(ids) == len(set(ids))
