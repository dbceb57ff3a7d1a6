"""One experiment's statistics, put together from the pure pieces of this package.

Standard library only. Conventions (docs/experiments.md, "The results report"):
- alpha = 1 - the experiment's confidence_level; every interval is at that level;
- rate = converted participants / exposed participants, with a Wilson score interval;
- revenue per exposure = mean net revenue over exposed participants, with a t interval;
- lifts are absolute differences against the control, tested by the report's method
  (:mod:`ingester.report.lift`), p-values adjusted per metric (:mod:`ingester.report.adjust`);
- the winner is decided on conversion rate alone, and never while the SRM check is flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import ingester.report.planning as plans
from ingester.report.adjust import NAMES, NONE, adjust
from ingester.report.distributions import normal_quantile
from ingester.report.lift import Design, Lift, compare, design, proportion
from ingester.report.model import (
    Analysis,
    ExperimentData,
    ExperimentInfo,
    MetricStats,
    ReportOptions,
    VariantCounts,
    VariantStats,
)
from ingester.report.revenue import mean_interval, sample
from ingester.report.srm import chi_square, weights
from ingester.report.timeline import timeline
from ingester.report.verdict import verdict

CONTROL_NAME = "control"


def critical_value(level: float) -> float:
    """z such that a standard normal lies within +-z with probability ``level``."""
    return normal_quantile(1 - (1 - level) / 2)


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    if trials <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    z = critical_value(level)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def choose_control(variants: Sequence[VariantCounts]) -> VariantCounts | None:
    """The variant named ``control``, else the earliest created (then by name)."""
    for variant in variants:
        if variant.name == CONTROL_NAME:
            return variant
    return min(variants, key=lambda v: (v.created_at, v.name), default=None)


def _rate(counts: VariantCounts, level: float) -> MetricStats:
    if not counts.exposures:
        return MetricStats(None, None, None)
    low, high = wilson_interval(counts.conversions, counts.exposures, level)
    return MetricStats(counts.conversions / counts.exposures, low, high)


def _revenue(counts: VariantCounts, alpha: float) -> MetricStats:
    values = sample(counts.revenue)
    if values is None:
        return MetricStats(None, None, None)
    interval = mean_interval(values, alpha)
    low, high = interval if interval is not None else (None, None)
    return MetricStats(values.mean, low, high)


def _lifts(
    variant: VariantCounts, control: VariantCounts | None, plan: Design
) -> tuple[Lift | None, Lift | None]:
    """The lifts of ``variant`` over the control in conversion rate and in revenue."""
    if control is None or variant.name == control.name:
        return None, None
    rate = compare(
        proportion(variant.conversions, variant.exposures),
        proportion(control.conversions, control.exposures),
        plan,
    )
    treated, baseline = sample(variant.revenue), sample(control.revenue)
    if treated is None or baseline is None:
        return rate, None
    return rate, compare(treated, baseline, plan, student_t=True)


def _with_lift(
    metric: MetricStats, lift: Lift | None, adjusted: float | None, alpha: float
) -> MetricStats:
    significant = None if adjusted is None else adjusted < alpha
    return MetricStats(metric.value, metric.ci_low, metric.ci_high, lift, adjusted, significant)


def analyse(
    info: ExperimentInfo, data: ExperimentData, options: ReportOptions | None = None
) -> Analysis:
    options = options or ReportOptions()
    variants = data.variants
    level = info.confidence_level
    plan = design(options.method, level, info.target_sample_size)
    control = choose_control(variants)
    shares = weights([v.weight for v in variants])
    srm = chi_square([v.exposures for v in variants], shares.shares)
    lifts = [_lifts(v, control, plan) for v in variants]
    rate_adjusted = adjust([r.p_value if r else None for r, _ in lifts], options.adjust)
    revenue_adjusted = adjust([m.p_value if m else None for _, m in lifts], options.adjust)
    control_rate = None
    if control is not None and control.exposures:
        control_rate = control.conversions / control.exposures
    planned = _plan(info, variants, control, control_rate, shares.shares, plan, options.adjust)
    stats = []
    for i, v in enumerate(variants):
        rate_lift, revenue_lift = lifts[i]
        stats.append(
            VariantStats(
                name=v.name,
                is_control=control is not None and v.name == control.name,
                weight=shares.shares[i],
                exposures=v.exposures,
                conversions=v.conversions,
                revenue=v.revenue.total,
                rate=_with_lift(_rate(v, level), rate_lift, rate_adjusted[i], plan.alpha),
                revenue_per_exposure=_with_lift(
                    _revenue(v, plan.alpha), revenue_lift, revenue_adjusted[i], plan.alpha
                ),
                relative_lift=rate_lift.estimate / control_rate
                if rate_lift is not None and control_rate
                else None,
                power=planned.power_by_variant[i],
                exposures_needed=planned.needed_by_variant[i],
            )
        )
    winner, message = verdict(stats, srm, NAMES[options.adjust])
    reached = None
    if info.target_sample_size is not None:
        reached = bool(variants) and all(v.exposures >= info.target_sample_size for v in variants)
    control_name = control.name if control else None
    return Analysis(
        control=control_name,
        confidence_level=level,
        design=plan,
        adjustment=options.adjust,
        winsorize=options.winsorize,
        revenue_cap=data.revenue_cap,
        weights_from_config=shares.from_config,
        srm=srm,
        multiple_exposure_users=data.multiple_exposure_users,
        winner=winner,
        verdict=message,
        target_sample_size=info.target_sample_size,
        target_reached=reached,
        planning=planned.summary,
        variants=tuple(stats),
        timeline=timeline(data.daily, [v.name for v in variants], control_name, plan),
    )


def _plan(
    info: ExperimentInfo,
    variants: Sequence[VariantCounts],
    control: VariantCounts | None,
    control_rate: float | None,
    shares: Sequence[float],
    plan: Design,
    adjustment: str,
) -> plans.PlanResult:
    """Planned for the per-comparison level of Holm's first step (alpha / treatments)."""
    treatments = max(len(variants) - 1, 1)
    alpha = plan.alpha if adjustment == NONE else plan.alpha / treatments
    return plans.plan(
        mde=info.minimum_detectable_effect,
        target=info.target_sample_size,
        control=variants.index(control) if control is not None else None,
        control_rate=control_rate,
        exposures=[v.exposures for v in variants],
        recent=[v.recent_exposures for v in variants],
        shares=list(shares),
        plan_design=plan,
        alpha=alpha,
    )
