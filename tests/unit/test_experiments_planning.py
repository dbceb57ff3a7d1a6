"""Planning figures against statsmodels' power of a normal test with unequal variances."""

from __future__ import annotations

import math

import pytest
from scipy import optimize, stats
from statsmodels.stats.power import normal_power_het

from ingester.report.lift import design
from ingester.report.planning import (
    Alternative,
    control_size_needed,
    days_left,
    plan,
    power,
)
from ingester.report.sequential import critical_multiplier

EFFECT = Alternative(0.12, 0.126)  # 5 % relative on 12 %


def _reference(effect: Alternative, n: float, ratio: float, method: str, alpha: float) -> float:
    """statsmodels' power with the variance of the unpooled difference; for the sequential
    test, the fixed level whose critical value is the sequence's multiplier at that size."""
    pc, pt = effect.control_rate, effect.treatment_rate
    std = math.sqrt(pc * (1 - pc) + pt * (1 - pt) / ratio)
    if method == "sequential":
        rho = design("sequential", 1 - alpha, 10_000).rho
        alpha = 2 * float(stats.norm.sf(critical_multiplier(n + ratio * n, alpha, rho)))
    return float(normal_power_het(effect.delta, n, alpha, std_null=std))


@pytest.mark.parametrize("method", ["fixed", "sequential"])
@pytest.mark.parametrize(
    ("n", "ratio", "alpha"),
    [(100, 1, 0.05), (5000, 1, 0.05), (20_000, 2, 0.05), (60_000, 0.5, 0.01), (90_000, 1, 0.2)],
)
def test_power_matches_statsmodels(method: str, n: int, ratio: float, alpha: float) -> None:
    plan_design = design(method, 1 - alpha, 10_000)
    ours = power(EFFECT, n, ratio * n, plan_design, alpha)
    assert ours == pytest.approx(_reference(EFFECT, n, ratio, method, alpha), abs=1e-9)


@pytest.mark.parametrize("method", ["fixed", "sequential"])
@pytest.mark.parametrize("ratio", [1.0, 3.0, 0.25])
def test_size_needed_is_the_smallest_with_80_percent_power(method: str, ratio: float) -> None:
    plan_design = design(method, 0.95, 10_000)
    size = control_size_needed(EFFECT, ratio, plan_design, 0.05)
    assert size is not None
    assert power(EFFECT, size, ratio * size, plan_design, 0.05) >= 0.8
    assert power(EFFECT, size - 1, ratio * (size - 1), plan_design, 0.05) < 0.8
    continuous = optimize.brentq(
        lambda n: _reference(EFFECT, n, ratio, method, 0.05) - 0.8, 10, 10**8
    )
    assert size == math.ceil(continuous)


def test_fixed_size_matches_the_textbook_formula() -> None:
    # n = (z_.975 + z_.8)^2 (p1 q1 + p2 q2) / delta^2, the other tail being negligible
    size = control_size_needed(EFFECT, 1.0, design("fixed", 0.95, None), 0.05)
    textbook = (1.959964 + 0.841621) ** 2 * (0.12 * 0.88 + 0.126 * 0.874) / 0.006**2
    assert size is not None and abs(size - textbook) < 1


@pytest.mark.parametrize(
    ("rate", "mde", "expected"),
    [
        pytest.param(0.12, 0.05, Alternative(0.12, 0.126), id="relative"),
        pytest.param(0.0, 0.05, None, id="no control conversions"),
        pytest.param(0.99, 0.05, None, id="beyond 100 %"),
        pytest.param(0.12, 0.0, None, id="no effect"),
    ],
)
def test_alternative_reads_the_mde_as_relative(
    rate: float, mde: float, expected: Alternative | None
) -> None:
    result = Alternative.relative(rate, mde)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert (result.control_rate, result.treatment_rate) == pytest.approx(
            (expected.control_rate, expected.treatment_rate)
        )


@pytest.mark.parametrize(
    ("missing", "recent", "days"),
    [
        pytest.param([700, 1400], [70, 70], 140.0, id="the slowest variant decides"),
        pytest.param([0, 0], [0, 0], 0.0, id="nothing missing"),
        pytest.param([10, 0], [0, 5], None, id="no recent exposures"),
    ],
)
def test_days_left(missing: list[int], recent: list[int], days: float | None) -> None:
    assert days_left(missing, recent) == days


def test_plan_puts_the_pieces_together() -> None:
    plan_design = design("fixed", 0.95, None)
    result = plan(
        mde=0.05,
        target=30_000,
        control=0,
        control_rate=0.12,
        exposures=[10_000, 10_000],
        recent=[7_000, 7_000],
        shares=[0.5, 0.5],
        plan_design=plan_design,
        alpha=0.05,
    )
    needed = control_size_needed(EFFECT, 1.0, plan_design, 0.05)
    assert needed is not None
    assert result.needed_by_variant == (needed, needed)
    assert result.power_by_variant[0] is None
    assert result.power_by_variant[1] == pytest.approx(
        power(EFFECT, 10_000, 10_000, plan_design, 0.05)
    )
    summary = result.summary
    assert summary.power == result.power_by_variant[1]
    assert summary.power_at_target == pytest.approx(
        power(EFFECT, 30_000, 30_000, plan_design, 0.05)
    )
    assert summary.exposures_still_needed == 2 * (needed - 10_000)
    assert summary.daily_exposures == 2000
    assert summary.days_left == pytest.approx((needed - 10_000) / 1000)
    assert summary.days_to_target == pytest.approx(20.0)


def test_plan_without_mde_has_no_power_figures() -> None:
    result = plan(
        None, None, 0, 0.12, [10, 10], [1, 1], [0.5, 0.5], design("fixed", 0.95, None), 0.05
    )
    assert result.summary.power is None and result.summary.exposures_still_needed is None
    assert result.needed_by_variant == (None, None)
