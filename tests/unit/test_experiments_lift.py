"""Lift tests, p-value adjustments, the SRM check and revenue samples against scipy and
statsmodels (and the published formulas of the confidence sequence)."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.multitest import multipletests

from ingester.report import sequential
from ingester.report.adjust import adjust, benjamini_hochberg, holm
from ingester.report.lift import (
    DEFAULT_TUNING_SAMPLE_SIZE,
    Sample,
    compare,
    design,
    proportion,
    welch_df,
)
from ingester.report.revenue import RevenueSums, mean_interval, sample
from ingester.report.srm import chi_square, weights

FIXED = design("fixed", 0.95, None)
SEQUENTIAL = design("sequential", 0.95, 10_000)


@pytest.mark.parametrize(
    ("control", "treatment", "level"),
    [
        pytest.param((120, 1000), (150, 1000), 0.95, id="hand fixture"),
        pytest.param((150, 1000), (120, 1000), 0.95, id="reversed"),
        pytest.param((75, 500), (125, 700), 0.99, id="unequal sizes at 99%"),
        pytest.param((3, 40), (0, 35), 0.80, id="tiny counts at 80%"),
    ],
)
def test_fixed_rate_lift_is_the_unpooled_wald_test(
    control: tuple[int, int], treatment: tuple[int, int], level: float
) -> None:
    lift = compare(proportion(*treatment), proportion(*control), design("fixed", level, None))
    assert lift is not None
    ref = sm_proportion.test_proportions_2indep(*treatment, *control, method="wald", compare="diff")
    low, high = sm_proportion.confint_proportions_2indep(
        *treatment, *control, method="wald", compare="diff", alpha=1 - level
    )
    assert lift.estimate == pytest.approx(treatment[0] / treatment[1] - control[0] / control[1])
    assert lift.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)
    assert (lift.ci_low, lift.ci_high) == pytest.approx((float(low), float(high)), abs=1e-9)


def test_fixed_rate_lift_hand_fixture() -> None:
    # se = sqrt(.12 * .88 / 1000 + .15 * .85 / 1000) = 0.0152676; z = 0.03 / se = 1.96494
    lift = compare(proportion(150, 1000), proportion(120, 1000), FIXED)
    assert lift is not None
    assert lift.p_value == pytest.approx(0.049421, abs=1e-6)
    assert lift.ci_low == pytest.approx(0.03 - 1.959964 * 0.0152676, abs=1e-6)


def _values(seed: int, n: int, scale: float) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.lognormvariate(0, 1) * scale, 2) if rng.random() < 0.3 else 0.0
            for _ in range(n)]  # fmt: skip


def _sample(values: list[float]) -> Sample:
    return Sample(len(values), float(np.mean(values)), float(np.var(values, ddof=1)))


@pytest.mark.parametrize(
    ("seeds", "sizes", "scales"),
    [
        pytest.param((1, 2), (400, 400), (10, 10), id="equal sizes"),
        pytest.param((3, 4), (120, 900), (10, 14), id="unequal sizes and spreads"),
        pytest.param((5, 6), (8, 5), (3, 30), id="very small"),
    ],
)
def test_fixed_revenue_lift_is_welchs_t_test(
    seeds: tuple[int, int], sizes: tuple[int, int], scales: tuple[float, float]
) -> None:
    control = _values(seeds[0], sizes[0], scales[0])
    treatment = _values(seeds[1], sizes[1], scales[1])
    lift = compare(_sample(treatment), _sample(control), FIXED, student_t=True)
    assert lift is not None
    ref = stats.ttest_ind(treatment, control, equal_var=False)
    assert lift.p_value == pytest.approx(float(ref.pvalue), abs=1e-9)
    interval = ref.confidence_interval(0.95)
    assert lift.ci_low == pytest.approx(float(interval.low), abs=1e-9)
    assert lift.ci_high == pytest.approx(float(interval.high), abs=1e-9)
    assert welch_df(_sample(treatment), _sample(control)) == pytest.approx(float(ref.df))


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        pytest.param(Sample(1, 0.5, 0.0), Sample(10, 0.5, 0.25), id="one control user"),
        pytest.param(Sample(10, 0.0, 0.0), Sample(10, 0.0, 0.0), id="no variance"),
    ],
)
def test_untestable_lifts_are_none(control: Sample, treatment: Sample) -> None:
    assert compare(treatment, control, FIXED) is None
    assert compare(treatment, control, SEQUENTIAL) is None


def test_rho_is_tightest_at_the_tuning_sample_size() -> None:
    # Waudby-Smith et al. eq. 161: rho^2 = (-2 ln a + ln(-2 ln a + 1)) / N
    alpha, n = 0.05, 20_000
    expected = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / n)
    rho = sequential.mixing_rho(alpha, n)
    assert rho == pytest.approx(expected, rel=1e-12)
    # the ratio of the sequence's width to the fixed-horizon interval's is smallest near N
    ratio = {
        m: sequential.critical_multiplier(m, alpha, rho) / stats.norm.ppf(1 - alpha / 2)
        for m in (2_000, 20_000, 200_000)
    }
    assert ratio[20_000] < ratio[2_000] and ratio[20_000] < ratio[200_000]


def test_confidence_sequence_matches_the_published_half_width() -> None:
    # eq. 9: sqrt(s2) * sqrt(2 (n r^2 + 1) / (n r)^2 * ln(sqrt(n r^2 + 1) / alpha))
    se2, n, alpha = 0.0152676**2, 2000, 0.05
    rho = sequential.mixing_rho(alpha, 20_000)
    s2 = se2 * n
    expected = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) / (n * rho) ** 2 * math.log(math.sqrt(n * rho**2 + 1) / alpha)
    )
    assert sequential.halfwidth(se2, n, alpha, rho) == pytest.approx(expected, rel=1e-12)
    lift = compare(proportion(150, 1000), proportion(120, 1000), SEQUENTIAL)
    assert lift is not None
    assert lift.ci_high - lift.estimate == pytest.approx(
        sequential.halfwidth(0.12 * 0.88 / 1000 + 0.15 * 0.85 / 1000, 2000, 0.05, rho),
        rel=1e-12,
    )


@pytest.mark.parametrize("estimate", [0.0, 0.01, 0.025, 0.04, 0.06, 0.1, -0.07])
def test_always_valid_p_value_is_the_smallest_alpha_excluding_zero(estimate: float) -> None:
    se2, n = 0.0152676**2, 2000
    rho = sequential.mixing_rho(0.05, 20_000)
    p = sequential.always_valid_p_value(estimate, se2, n, rho)
    assert 0 < p <= 1
    if p < 1:  # at alpha = p the sequence touches 0; a hair wider or narrower flips it
        assert sequential.halfwidth(se2, n, p, rho) == pytest.approx(abs(estimate), rel=1e-9)
        assert sequential.halfwidth(se2, n, p * 1.001, rho) < abs(estimate)
        assert sequential.halfwidth(se2, n, p * 0.999, rho) > abs(estimate)


def test_sequential_is_wider_than_fixed_and_agrees_with_its_p_value() -> None:
    fixed = compare(proportion(150, 1000), proportion(120, 1000), FIXED)
    always = compare(proportion(150, 1000), proportion(120, 1000), SEQUENTIAL)
    assert fixed is not None and always is not None
    assert always.ci_high - always.ci_low > fixed.ci_high - fixed.ci_low
    assert always.p_value > fixed.p_value
    assert (always.ci_low > 0) == (always.p_value < SEQUENTIAL.alpha)


@pytest.mark.parametrize(
    ("target", "tuning", "from_target"),
    [
        pytest.param(10_000, 20_000, True, id="two variants at the target"),
        pytest.param(None, DEFAULT_TUNING_SAMPLE_SIZE, False, id="no target"),
        pytest.param(0, DEFAULT_TUNING_SAMPLE_SIZE, False, id="zero target"),
    ],
)
def test_tuning_sample_size(target: int | None, tuning: int, from_target: bool) -> None:
    plan = design("sequential", 0.9, target)
    assert (plan.tuning_sample_size, plan.tuning_from_target, plan.alpha) == (
        tuning,
        from_target,
        0.1,
    )


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        design("bayesian", 0.95, None)


@pytest.mark.parametrize("seed", range(10))
def test_adjustments_match_statsmodels(seed: int) -> None:
    rng = random.Random(seed)
    p_values = [rng.random() ** rng.choice([1, 3, 8]) for _ in range(rng.randint(1, 9))]
    if len(p_values) > 2:
        p_values[2] = p_values[0]  # ties
    for ours, method in ((holm, "holm"), (benjamini_hochberg, "fdr_bh")):
        reference = multipletests(p_values, method=method)[1]
        assert ours(p_values) == pytest.approx([float(x) for x in reference], abs=1e-12)


def test_adjust_skips_undefined_p_values() -> None:
    assert adjust([None, 0.01, 0.04], "holm") == [None, pytest.approx(0.02), 0.04]
    assert adjust([None, 0.01, 0.04], "bh") == [None, 0.02, 0.04]
    assert adjust([None, 0.01], "none") == [None, 0.01]
    with pytest.raises(ValueError, match="unknown adjustment"):
        adjust([0.1], "sidak")


@pytest.mark.parametrize(
    ("observed", "configured"),
    [
        pytest.param([5200, 4800], [None, None], id="52/48 equal"),
        pytest.param([5000, 5000], [0.5, 0.5], id="exact"),
        pytest.param([210, 290, 500], [0.2, 0.3, 0.5], id="weighted three"),
        pytest.param([30, 20, 25, 25], [1, 1, 1, 1], id="four, weights as counts"),
        pytest.param([900, 100], [90, 10], id="90/10"),
    ],
)
def test_srm_matches_scipy_chisquare(observed: list[int], configured: list[float | None]) -> None:
    shares = weights(configured).shares
    result = chi_square(observed, shares)
    expected = [s * sum(observed) for s in shares]
    reference = stats.chisquare(observed, expected)
    assert result.statistic == pytest.approx(float(reference.statistic), rel=1e-12)
    assert result.p_value == pytest.approx(float(reference.pvalue), abs=1e-12, rel=1e-9)
    assert result.df == len(observed) - 1


def test_srm_flags_52_48_at_10000_exposures() -> None:
    result = chi_square([5200, 4800], weights([0.5, 0.5]).shares)
    assert result.statistic == pytest.approx(16.0)
    assert result.p_value == pytest.approx(6.334248366623988e-05, rel=1e-9)
    assert result.flagged


@pytest.mark.parametrize(
    ("configured", "shares", "from_config"),
    [
        pytest.param([0.2, 0.8], (0.2, 0.8), True, id="configured"),
        pytest.param([1, 3], (0.25, 0.75), True, id="normalised"),
        pytest.param([None, 0.5], (0.5, 0.5), False, id="one missing: equal"),
        pytest.param([-1.0, 2.0], (0.5, 0.5), False, id="negative: equal"),
        pytest.param([0.0, 0.0], (0.5, 0.5), False, id="all zero: equal"),
        pytest.param([0.0, 1.0], (0.0, 1.0), True, id="switched off variant"),
    ],
)
def test_weights(
    configured: list[float | None], shares: tuple[float, ...], from_config: bool
) -> None:
    result = weights(configured)
    assert result.shares == pytest.approx(shares)
    assert result.from_config is from_config


@pytest.mark.parametrize(
    ("observed", "shares", "p_value", "flagged"),
    [
        pytest.param([0, 0], [0.5, 0.5], None, False, id="no exposures"),
        pytest.param([10], [1.0], None, False, id="one variant"),
        pytest.param([10, 3], [1.0, 0.0], 0.0, True, id="exposures of a switched-off variant"),
        pytest.param([10, 0], [1.0, 0.0], None, False, id="switched off, no exposures"),
    ],
)
def test_srm_edge_cases(
    observed: list[int], shares: list[float], p_value: float | None, flagged: bool
) -> None:
    result = chi_square(observed, shares)
    assert (result.p_value, result.flagged) == (p_value, flagged)


def test_revenue_sample_matches_numpy() -> None:
    values = [Decimal("12.50"), Decimal("-3.10"), Decimal("0"), Decimal("999.99")] + [
        Decimal(0)
    ] * 96
    sums = RevenueSums(
        len(values), sum(values, Decimal(0)), sum((v * v for v in values), Decimal(0))
    )
    result = sample(sums)
    floats = [float(v) for v in values]
    assert result is not None
    assert result.mean == pytest.approx(float(np.mean(floats)), rel=1e-12)
    assert result.variance == pytest.approx(float(np.var(floats, ddof=1)), rel=1e-12)
    interval = mean_interval(result, 0.05)
    reference = stats.ttest_1samp(floats, 0).confidence_interval(0.95)
    assert interval == pytest.approx((float(reference.low), float(reference.high)), abs=1e-9)


@pytest.mark.parametrize(
    ("sums", "expected"),
    [
        pytest.param(RevenueSums(0, Decimal(0), Decimal(0)), None, id="no exposures"),
        pytest.param(RevenueSums(1, Decimal(5), Decimal(25)), Sample(1, 5.0, 0.0), id="one user"),
    ],
)
def test_revenue_sample_edges(sums: RevenueSums, expected: Sample | None) -> None:
    assert sample(sums) == expected
    if expected is not None:
        assert mean_interval(expected, 0.05) is None
