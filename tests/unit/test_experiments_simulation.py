"""Seeded simulations of the report's error rates (the figures in docs/experiments.md).

Reproduce the figures: ``.venv/bin/pytest tests/unit/test_experiments_simulation.py -s -q``.

- A/A experiments (no true difference) are read 20 times as they grow. With the sequential
  method the share ever called significant stays at or under alpha; the fixed-horizon test
  read the same way calls far more false winners.
- The SRM check flags a 52/48 split of 10,000 exposures, and 50/50 noise about 0.1 % of the
  time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from ingester.report.adjust import holm
from ingester.report.lift import Design, Sample, compare, design, proportion
from ingester.report.srm import chi_square

EXPERIMENTS = 2000
# fewer where each look costs several tests (Holm) or a Student t quantile (Welch)
HOLM_EXPERIMENTS = 1000
REVENUE_EXPERIMENTS = 500
LOOKS = 20
ALPHA = 0.05
RATE = 0.10
USERS_PER_LOOK = 500  # per variant: 10,000 each at the last look
TARGET = USERS_PER_LOOK * LOOKS


@dataclass(frozen=True, slots=True)
class Rates:
    ever: float  # share of experiments significant at one look or more
    last: float  # share significant at the last look only
    experiments: int

    @property
    def margin(self) -> float:
        """Three binomial standard errors of a share whose true value is alpha."""
        return 3 * math.sqrt(ALPHA * (1 - ALPHA) / self.experiments)


def _conversions(seed: int, experiments: int, arms: int) -> np.ndarray:
    """Cumulative conversions, shape (experiments, looks, arms)."""
    rng = np.random.default_rng(seed)
    draws = rng.binomial(USERS_PER_LOOK, RATE, size=(experiments, LOOKS, arms))
    return draws.cumsum(axis=1)


def _significant(lift_p: float | None) -> bool:
    return lift_p is not None and lift_p < ALPHA


def conversion_aa(plan: Design, seed: int = 20) -> Rates:
    conversions = _conversions(seed, EXPERIMENTS, 2)
    ever = last = 0
    for experiment in conversions:
        hits = []
        for look, (control, treatment) in enumerate(experiment):
            n = USERS_PER_LOOK * (look + 1)
            lift = compare(proportion(int(treatment), n), proportion(int(control), n), plan)
            hits.append(_significant(lift.p_value if lift else None))
        ever += any(hits)
        last += hits[-1]
    return Rates(ever / EXPERIMENTS, last / EXPERIMENTS, EXPERIMENTS)


def holm_aa(plan: Design, seed: int = 21, treatments: int = 3) -> Rates:
    """Family-wise: any of three treatments called significant after Holm's adjustment."""
    conversions = _conversions(seed, HOLM_EXPERIMENTS, treatments + 1)
    ever = last = 0
    for experiment in conversions:
        hits = []
        for look, counts in enumerate(experiment):
            n = USERS_PER_LOOK * (look + 1)
            control = proportion(int(counts[0]), n)
            lifts = [compare(proportion(int(c), n), control, plan) for c in counts[1:]]
            p_values = [lift.p_value if lift else 1.0 for lift in lifts]
            hits.append(any(p < ALPHA for p in holm(p_values)))
        ever += any(hits)
        last += hits[-1]
    return Rates(ever / HOLM_EXPERIMENTS, last / HOLM_EXPERIMENTS, HOLM_EXPERIMENTS)


def revenue_aa(plan: Design, seed: int = 22) -> Rates:
    """Revenue per user: 10 % buy, log-normal amounts (a long right tail)."""
    rng = np.random.default_rng(seed)
    sums = np.zeros((REVENUE_EXPERIMENTS, 2))
    squares = np.zeros((REVENUE_EXPERIMENTS, 2))
    hits = np.zeros((REVENUE_EXPERIMENTS, LOOKS), dtype=bool)
    for look in range(LOOKS):
        bought = rng.random((REVENUE_EXPERIMENTS, 2, USERS_PER_LOOK)) < RATE
        values = np.where(bought, rng.lognormal(3.0, 1.0, bought.shape), 0.0)
        sums += values.sum(axis=2)
        squares += (values * values).sum(axis=2)
        n = USERS_PER_LOOK * (look + 1)
        means = sums / n
        variances = (squares - sums * means) / (n - 1)
        for i in range(REVENUE_EXPERIMENTS):
            lift = compare(
                Sample(n, float(means[i, 1]), float(variances[i, 1])),
                Sample(n, float(means[i, 0]), float(variances[i, 0])),
                plan,
                student_t=True,
            )
            hits[i, look] = _significant(lift.p_value if lift else None)
    return Rates(float(hits.any(axis=1).mean()), float(hits[:, -1].mean()), REVENUE_EXPERIMENTS)


def srm_flag_rate(share: float, exposures: int, runs: int, seed: int = 23) -> float:
    rng = np.random.default_rng(seed)
    first = rng.binomial(exposures, share, size=runs)
    flagged = sum(chi_square([int(a), exposures - int(a)], [0.5, 0.5]).flagged for a in first)
    return flagged / runs


@pytest.fixture(scope="module")
def figures() -> dict[str, Rates]:
    sequential = design("sequential", 1 - ALPHA, TARGET)
    fixed = design("fixed", 1 - ALPHA, TARGET)
    return {
        "conversion, sequential": conversion_aa(sequential),
        "conversion, fixed": conversion_aa(fixed),
        "conversion, sequential, default tuning": conversion_aa(design("sequential", 0.95, None)),
        "3 treatments, Holm, sequential": holm_aa(sequential),
        "3 treatments, Holm, fixed": holm_aa(fixed),
        "revenue, sequential": revenue_aa(sequential),
        "revenue, fixed (Welch)": revenue_aa(fixed),
    }


def test_print_figures(figures: dict[str, Rates]) -> None:
    print(f"\nA/A experiments, {LOOKS} looks of {USERS_PER_LOOK} more users per variant each")
    print(f"(conversion rate {RATE:.0%}), alpha {ALPHA}: share of experiments called significant")
    for name, rates in figures.items():
        print(
            f"  {name:40} {rates.experiments:5} runs: at any look {rates.ever:6.2%},"
            f" at the last look {rates.last:6.2%}"
        )
    assert figures


@pytest.mark.parametrize(
    "name",
    [
        "conversion, sequential",
        "conversion, sequential, default tuning",
        "3 treatments, Holm, sequential",
        "revenue, sequential",
    ],
)
def test_sequential_keeps_peeking_within_alpha(figures: dict[str, Rates], name: str) -> None:
    assert figures[name].ever <= ALPHA + figures[name].margin


@pytest.mark.parametrize(
    "name", ["conversion, fixed", "3 treatments, Holm, fixed", "revenue, fixed (Welch)"]
)
def test_fixed_horizon_read_every_look_inflates_false_winners(
    figures: dict[str, Rates], name: str
) -> None:
    assert figures[name].ever > 2 * ALPHA
    # ...while a single look at the planned size keeps its promise
    assert abs(figures[name].last - ALPHA) <= figures[name].margin


def test_srm_flags_a_52_48_split_of_10000() -> None:
    assert chi_square([5200, 4800], [0.5, 0.5]).flagged
    power = srm_flag_rate(0.52, 10_000, runs=4000)
    print(f"\nSRM: a true 52/48 split of 10,000 exposures is flagged in {power:.1%} of runs")
    assert power > 0.7


def test_srm_flags_50_50_noise_about_once_in_a_thousand() -> None:
    runs = 100_000
    rate = srm_flag_rate(0.5, 10_000, runs)
    error = (0.001 * 0.999 / runs) ** 0.5
    print(f"\nSRM: 50/50 noise is flagged in {rate:.3%} of {runs} runs (expected 0.100%)")
    assert abs(rate - 0.001) <= 4 * error
