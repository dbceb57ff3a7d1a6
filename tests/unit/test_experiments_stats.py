"""The report's analysis of one experiment: intervals, lifts, adjustment, SRM and verdict."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ingester.report.model import (
    Analysis,
    DailyCounts,
    ExperimentData,
    ExperimentInfo,
    ReportOptions,
    VariantCounts,
    check_options,
)
from ingester.report.revenue import RevenueSums
from ingester.report.stats import analyse, choose_control, critical_value, wilson_interval

T = datetime(2024, 1, 1, tzinfo=UTC)
FIXED = ReportOptions(method="fixed")


def counts(
    name: str,
    n: int,
    c: int,
    value: int = 10,
    age: int = 0,
    weight: float | None = None,
    recent: int = 0,
) -> VariantCounts:
    """Every converted user spent ``value``."""
    revenue = RevenueSums(n, Decimal(c * value), Decimal(c * value * value))
    return VariantCounts(name, T + timedelta(days=age), n, c, revenue, weight, recent)


def info(
    level: float = 0.95, target: int | None = None, mde: float | None = 0.05
) -> ExperimentInfo:
    return ExperimentInfo(
        uuid.uuid4(), "checkout", None, "active", True, level, target, T, None, mde
    )


def run(
    *variants: VariantCounts,
    options: ReportOptions = FIXED,
    target: int | None = None,
    mde: float | None = 0.05,
) -> Analysis:
    return analyse(info(target=target, mde=mde), ExperimentData(variants), options)


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0.95, 1.959964), (0.99, 2.575829), (0.80, 1.281552)],
)
def test_critical_value(level: float, expected: float) -> None:
    assert critical_value(level) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "trials", "level"),
    [(120, 1000, 0.95), (150, 1000, 0.95), (50, 100, 0.99), (0, 10, 0.95), (10, 10, 0.8)],
)
def test_wilson_interval_matches_statsmodels(successes: int, trials: int, level: float) -> None:
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=1 - level, method="wilson")
    assert wilson_interval(successes, trials, level) == pytest.approx(
        (float(low), float(high)), abs=1e-9
    )


def test_wilson_interval_needs_a_trial() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)


@pytest.mark.parametrize(
    ("variants", "control"),
    [
        pytest.param([counts("b", 1, 0), counts("control", 1, 0, age=5)], "control", id="named"),
        pytest.param([counts("b", 1, 0, age=2), counts("a", 1, 0, age=1)], "a", id="earliest"),
        pytest.param([counts("b", 1, 0), counts("a", 1, 0)], "a", id="tie by name"),
    ],
)
def test_choose_control(variants: list[VariantCounts], control: str) -> None:
    chosen = choose_control(variants)
    assert chosen is not None and chosen.name == control


def test_fixed_hand_fixture() -> None:
    result = run(counts("control", 1000, 120), counts("treatment", 1000, 150, age=1), target=1000)
    control, treatment = result.variants
    assert result.control == "control" and result.target_reached is True
    assert control.is_control and control.rate.lift is None and control.rate.significant is None
    assert control.rate.value == 0.12
    assert (control.rate.ci_low, control.rate.ci_high) == pytest.approx(
        (0.10130, 0.14161), abs=1e-5
    )
    lift = treatment.rate.lift
    assert lift is not None
    assert lift.estimate == pytest.approx(0.03)
    assert treatment.relative_lift == pytest.approx(0.25)
    assert lift.p_value == pytest.approx(0.049421, abs=1e-6)
    assert treatment.rate.p_value_adjusted == lift.p_value  # one treatment: nothing to adjust
    assert treatment.rate.significant is True
    assert result.winner == "treatment" and result.verdict.startswith("winner: treatment")
    assert treatment.revenue_per_exposure.value == pytest.approx(1.5)


def test_sequential_is_the_default_and_more_cautious() -> None:
    result = run(
        counts("control", 1000, 120), counts("treatment", 1000, 150), options=ReportOptions()
    )
    assert result.design.method == "sequential"
    treatment = result.variants[1]
    assert treatment.rate.lift is not None and treatment.rate.lift.p_value > 0.05
    assert treatment.rate.significant is False
    assert result.winner is None and result.verdict.startswith("no winner yet")


def test_revenue_lift_is_welchs_test_on_the_users_values() -> None:
    result = run(counts("control", 400, 40, value=20), counts("b", 300, 45, value=25))
    control = [20.0] * 40 + [0.0] * 360
    treated = [25.0] * 45 + [0.0] * 255
    reference = stats.ttest_ind(treated, control, equal_var=False)
    metric = result.variants[1].revenue_per_exposure
    assert metric.lift is not None
    assert metric.lift.p_value == pytest.approx(float(reference.pvalue), abs=1e-9)
    interval = reference.confidence_interval(0.95)
    assert metric.lift.ci_low == pytest.approx(float(interval.low), abs=1e-9)
    one = stats.ttest_1samp(control, 0).confidence_interval(0.95)
    control_metric = result.variants[0].revenue_per_exposure
    assert (control_metric.ci_low, control_metric.ci_high) == pytest.approx(
        (float(one.low), float(one.high)), abs=1e-9
    )


@pytest.mark.parametrize(("adjust", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_several_treatments_are_adjusted(adjust: str, method: str) -> None:
    result = run(
        counts("control", 2000, 200),
        counts("b", 2000, 245),
        counts("c", 2000, 232),
        counts("d", 2000, 205),
        options=ReportOptions(method="fixed", adjust=adjust),
    )
    raw = [v.rate.lift.p_value for v in result.variants[1:] if v.rate.lift]
    adjusted = [v.rate.p_value_adjusted for v in result.variants[1:]]
    assert adjusted == pytest.approx([float(p) for p in multipletests(raw, method=method)[1]])
    assert [v.rate.significant for v in result.variants[1:]] == [
        p is not None and p < 0.05 for p in adjusted
    ]


def test_without_adjustment_the_p_values_stay() -> None:
    result = run(counts("control", 500, 50), counts("b", 500, 60), counts("c", 500, 40),
                 options=ReportOptions(method="fixed", adjust="none"))  # fmt: skip
    for v in result.variants[1:]:
        assert v.rate.lift is not None and v.rate.p_value_adjusted == v.rate.lift.p_value


def test_the_largest_significant_lift_wins() -> None:
    result = run(counts("control", 5000, 500), counts("b", 5000, 600), counts("c", 5000, 700))
    assert result.winner == "c"


def test_control_wins_when_every_variant_is_worse() -> None:
    result = run(counts("control", 5000, 700), counts("b", 5000, 500), counts("c", 5000, 520))
    assert result.winner == "control" and "every other variant" in result.verdict


def test_sample_ratio_mismatch_names_no_winner() -> None:
    result = run(counts("control", 5200, 400), counts("treatment", 4800, 700))
    assert result.srm.flagged and result.srm.p_value == pytest.approx(6.334248e-05, rel=1e-6)
    assert result.variants[1].rate.significant is True  # a large lift...
    assert result.winner is None  # ...and yet no winner
    assert "sample ratio mismatch" in result.verdict


def test_weights_from_config_decide_the_srm_check() -> None:
    # 2,500 / 7,500 is exactly a 25/75 split but a gross mismatch against equal shares
    weighted = run(counts("control", 2500, 10, weight=0.25), counts("b", 7500, 30, weight=0.75))
    assert weighted.weights_from_config and not weighted.srm.flagged
    assert [v.weight for v in weighted.variants] == [0.25, 0.75]
    unweighted = run(counts("control", 2500, 10, weight=0.25), counts("b", 7500, 30))
    assert not unweighted.weights_from_config and unweighted.srm.flagged


def test_zero_exposures_and_zero_control_rate() -> None:
    result = run(counts("control", 100, 0), counts("b", 100, 5), counts("c", 0, 0), target=100)
    control, b, c = result.variants
    assert b.rate.lift is not None and b.rate.lift.estimate == pytest.approx(0.05)
    assert b.relative_lift is None  # undefined against a 0 % control
    assert (c.rate.value, c.rate.ci_low, c.rate.lift, c.revenue_per_exposure.value) == (
        None,
        None,
        None,
        None,
    )
    assert result.target_reached is False and control.rate.value == 0.0


@pytest.mark.parametrize(
    ("target", "reached"),
    [(999, True), (1000, True), (1001, False), (None, None)],
)
def test_target_sample_size_needs_every_variant(target: int | None, reached: bool | None) -> None:
    result = run(counts("control", 1000, 1), counts("b", 1200, 1), target=target)
    assert result.target_reached is reached


def test_planning_figures_reach_the_variants() -> None:
    result = run(
        counts("control", 10_000, 1200, recent=7000),
        counts("b", 10_000, 1230, recent=7000),
        target=30_000,
    )
    plan = result.planning
    assert plan.minimum_detectable_effect == 0.05 and plan.baseline_rate == 0.12
    assert plan.power is not None and 0 < plan.power < 0.8
    needed = result.variants[1].exposures_needed
    assert needed is not None and needed > 10_000
    assert plan.exposures_still_needed == 2 * (needed - 10_000)
    assert plan.days_left == pytest.approx((needed - 10_000) / 1000)


def test_timeline_accumulates_day_by_day() -> None:
    d0 = date(2024, 1, 1)
    daily = (
        DailyCounts(d0, "control", 100, 10, Decimal(100)),
        DailyCounts(d0, "b", 100, 12, Decimal(120)),
        DailyCounts(d0 + timedelta(days=2), "control", 100, 10, Decimal(-5)),
        DailyCounts(d0 + timedelta(days=2), "b", 100, 16, Decimal(0)),
    )
    variants = (counts("control", 200, 20), counts("b", 200, 28))
    result = analyse(info(), ExperimentData(variants, daily), FIXED)
    control, b = result.timeline["control"], result.timeline["b"]
    assert [p.day for p in b] == [d0, d0 + timedelta(days=1), d0 + timedelta(days=2)]
    assert [(p.exposures, p.conversions) for p in b] == [(100, 12), (100, 12), (200, 28)]
    assert [p.revenue for p in control] == [100, 100, 95]
    assert all(p.lift is None for p in control)
    assert b[-1].lift == result.variants[1].rate.lift  # the last day is today's figure


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        pytest.param(ReportOptions(), None, id="defaults"),
        pytest.param(ReportOptions(method="bayes"), "unknown method", id="method"),
        pytest.param(ReportOptions(adjust="sidak"), "unknown adjustment", id="adjust"),
        pytest.param(ReportOptions(winsorize=100), "not between 0 and 100", id="winsorize 100"),
        pytest.param(ReportOptions(winsorize=0), "not between 0 and 100", id="winsorize 0"),
        pytest.param(ReportOptions(winsorize=99.5), None, id="winsorize 99.5"),
    ],
)
def test_check_options(options: ReportOptions, problem: str | None) -> None:
    found = check_options(options)
    assert (found is None) if problem is None else (found is not None and problem in found)
