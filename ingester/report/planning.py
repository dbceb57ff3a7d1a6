"""How far the experiment is from being able to see its minimum detectable effect.

``minimum_detectable_effect`` is read as a relative lift of the conversion rate (0.05: the
treatment converts 5 % more than the control, e.g. 12 % -> 12.6 %), at the control's observed
rate. Under that alternative the lift test of the report's method rejects with probability

    power(n_c, n_t) = Phi(delta / se - c) + Phi(-delta / se - c),
    se = sqrt(p_c (1 - p_c) / n_c + p_t (1 - p_t) / n_t),

with ``c = z_{1 - alpha/2}`` for the fixed-horizon test and ``c = halfwidth / se`` of the
confidence sequence (which grows slowly with n) for the sequential one. With several
treatments alpha is divided by their number (Bonferroni), the level Holm's first step uses.
The exposures needed are the smallest per-variant sizes, split as the traffic weights split
them, that reach 80 % power; the days left divide what is still missing by each variant's
exposure rate over the last seven days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ingester.report.distributions import normal_cdf, normal_quantile
from ingester.report.lift import SEQUENTIAL, Design
from ingester.report.sequential import critical_multiplier

POWER_TARGET = 0.8
RECENT_DAYS = 7
_MAX_SAMPLE = 10**12  # beyond this an effect is not detectable in practice


@dataclass(frozen=True, slots=True)
class Planning:
    minimum_detectable_effect: float | None
    baseline_rate: float | None
    alpha: float
    power: float | None
    power_at_target: float | None
    exposures_still_needed: int | None
    daily_exposures: float
    days_left: float | None
    days_to_target: float | None
    power_target: float = POWER_TARGET


@dataclass(frozen=True, slots=True)
class Alternative:
    """The effect to detect: the control's rate and the treatment's rate under the MDE."""

    control_rate: float
    treatment_rate: float

    @classmethod
    def relative(cls, control_rate: float, mde: float) -> Alternative | None:
        treatment = control_rate * (1 + mde)
        if not 0 < control_rate < 1 or not 0 < treatment < 1 or mde == 0:
            return None
        return cls(control_rate, treatment)

    @property
    def delta(self) -> float:
        return self.treatment_rate - self.control_rate


def power(
    effect: Alternative, n_control: float, n_treatment: float, plan: Design, alpha: float
) -> float:
    """Probability that the test at level ``alpha`` rejects at these sizes under ``effect``."""
    if n_control <= 0 or n_treatment <= 0:
        return 0.0
    pc, pt = effect.control_rate, effect.treatment_rate
    se = math.sqrt(pc * (1 - pc) / n_control + pt * (1 - pt) / n_treatment)
    if plan.method == SEQUENTIAL:
        critical = critical_multiplier(n_control + n_treatment, alpha, plan.rho)
    else:
        critical = normal_quantile(1 - alpha / 2)
    shift = abs(effect.delta) / se
    return normal_cdf(shift - critical) + normal_cdf(-shift - critical)


def control_size_needed(
    effect: Alternative, ratio: float, plan: Design, alpha: float, target: float = POWER_TARGET
) -> int | None:
    """The smallest control size n (treatment ``ratio * n``) whose power reaches ``target``;
    None beyond any practical size."""

    def enough(n: int) -> bool:
        return power(effect, n, ratio * n, plan, alpha) >= target

    high = 2
    while not enough(high):
        high *= 2
        if high > _MAX_SAMPLE:
            return None
    low = high // 2  # power grows with n over the range that matters: bisect
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def days_left(still_needed: list[int], recent: list[int]) -> float | None:
    """Days until every variant has what it still needs at its last-seven-days rate; None
    when a variant that needs more had no exposures in that time."""
    days = 0.0
    for missing, seen in zip(still_needed, recent, strict=True):
        if missing <= 0:
            continue
        if seen <= 0:
            return None
        days = max(days, missing / (seen / RECENT_DAYS))
    return days


@dataclass(frozen=True, slots=True)
class PlanResult:
    summary: Planning
    power_by_variant: tuple[float | None, ...]
    needed_by_variant: tuple[int | None, ...]


def plan(
    mde: float | None,
    target: int | None,
    control: int | None,
    control_rate: float | None,
    exposures: list[int],
    recent: list[int],
    shares: list[float],
    plan_design: Design,
    alpha: float,
) -> PlanResult:
    """The planning figures. ``control`` is the control's index in the per-variant lists,
    ``alpha`` the per-comparison level the plan is made for."""
    count = len(exposures)
    powers: list[float | None] = [None] * count
    needed: list[int | None] = [None] * count
    at_target: list[float] = []
    effect = None
    if mde is not None and control is not None and control_rate is not None:
        effect = Alternative.relative(control_rate, mde)
    if effect is not None and control is not None:
        for i in range(count):
            if i == control or shares[control] <= 0 or shares[i] <= 0:
                continue
            powers[i] = power(effect, exposures[control], exposures[i], plan_design, alpha)
            ratio = shares[i] / shares[control]
            size = control_size_needed(effect, ratio, plan_design, alpha)
            if size is not None:
                needed[i] = math.ceil(ratio * size)
                needed[control] = max(needed[control] or 0, size)
            if target:
                at_target.append(power(effect, target, target, plan_design, alpha))
    known = [p for p in powers if p is not None]
    still: int | None = None
    days: float | None = None
    if known and all(needed[i] is not None for i in range(count) if powers[i] is not None):
        missing = [max(0, (n or 0) - seen) for n, seen in zip(needed, exposures, strict=True)]
        still = sum(missing)
        days = days_left(missing, recent)
    to_target = None
    if target:
        to_target = days_left([max(0, target - seen) for seen in exposures], recent)
    summary = Planning(
        minimum_detectable_effect=mde,
        baseline_rate=control_rate,
        alpha=alpha,
        power=min(known) if known else None,
        power_at_target=min(at_target) if at_target else None,
        exposures_still_needed=still,
        daily_exposures=sum(recent) / RECENT_DAYS,
        days_left=days,
        days_to_target=to_target,
    )
    return PlanResult(summary, tuple(powers), tuple(needed))
