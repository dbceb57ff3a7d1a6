"""Conversion statistics of one experiment: rates, Wilson intervals, lift and a z-test.

Standard library only. Conventions (docs/experiments.md):
- rate = converted participants / exposed participants of a variant;
- interval: Wilson score interval at ``INTERVAL_LEVEL`` (95 %);
- test: pooled two-proportion z-test of each variant against the control, two-sided
  p = erfc(|z| / sqrt 2); significant when p < 1 - confidence_level;
- lift: absolute = rate - control rate, relative = absolute / control rate;
- target sample size reached when every variant has at least ``target_sample_size``
  exposures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from statistics import NormalDist

INTERVAL_LEVEL = 0.95
CONTROL_NAME = "control"


@dataclass(frozen=True, slots=True)
class VariantCounts:
    name: str
    created_at: datetime
    exposures: int
    conversions: int
    revenue: Decimal


@dataclass(frozen=True, slots=True)
class VariantStats:
    name: str
    is_control: bool
    exposures: int
    conversions: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    absolute_lift: float | None
    relative_lift: float | None
    z: float | None
    p_value: float | None
    significant: bool | None
    revenue: Decimal
    revenue_per_exposure: float | None


@dataclass(frozen=True, slots=True)
class Analysis:
    control: str | None
    confidence_level: float
    target_sample_size: int | None
    target_reached: bool | None
    variants: tuple[VariantStats, ...]


def critical_value(level: float) -> float:
    """z such that a standard normal lies within +-z with probability ``level``."""
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def wilson_interval(
    successes: int, trials: int, level: float = INTERVAL_LEVEL
) -> tuple[float, float]:
    if trials <= 0:
        raise ValueError("the Wilson interval needs at least one trial")
    z = critical_value(level)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z_test(
    conversions_a: int, trials_a: int, conversions_b: int, trials_b: int
) -> tuple[float, float] | None:
    """Pooled z statistic of b against a and its two-sided p-value; None when undefined."""
    if trials_a <= 0 or trials_b <= 0:
        return None
    pooled = (conversions_a + conversions_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return None  # both rates are 0 or both are 1: no evidence either way
    z = (conversions_b / trials_b - conversions_a / trials_a) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def choose_control(variants: Sequence[VariantCounts]) -> VariantCounts | None:
    """The variant named ``control``, else the earliest created (then by name)."""
    for variant in variants:
        if variant.name == CONTROL_NAME:
            return variant
    return min(variants, key=lambda v: (v.created_at, v.name), default=None)


def _variant(
    counts: VariantCounts, control: VariantCounts | None, confidence_level: float
) -> VariantStats:
    n, c = counts.exposures, counts.conversions
    rate = c / n if n else None
    low, high = wilson_interval(c, n) if n else (None, None)
    is_control = control is not None and counts.name == control.name
    absolute = relative = z = p_value = None
    significant = None
    if not is_control and control is not None and rate is not None and control.exposures:
        control_rate = control.conversions / control.exposures
        absolute = rate - control_rate
        relative = absolute / control_rate if control_rate else None
        test = two_proportion_z_test(control.conversions, control.exposures, c, n)
        if test is not None:
            z, p_value = test
            significant = p_value < 1 - confidence_level
    return VariantStats(
        name=counts.name,
        is_control=is_control,
        exposures=n,
        conversions=c,
        rate=rate,
        ci_low=low,
        ci_high=high,
        absolute_lift=absolute,
        relative_lift=relative,
        z=z,
        p_value=p_value,
        significant=significant,
        revenue=counts.revenue,
        revenue_per_exposure=float(counts.revenue) / n if n else None,
    )


def analyse(
    variants: Sequence[VariantCounts], confidence_level: float, target_sample_size: int | None
) -> Analysis:
    control = choose_control(variants)
    reached = None
    if target_sample_size is not None:
        reached = bool(variants) and all(v.exposures >= target_sample_size for v in variants)
    return Analysis(
        control=control.name if control else None,
        confidence_level=confidence_level,
        target_sample_size=target_sample_size,
        target_reached=reached,
        variants=tuple(_variant(v, control, confidence_level) for v in variants),
    )
