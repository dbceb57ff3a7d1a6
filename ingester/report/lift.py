"""The lift of a variant over the control and its test, sequential or fixed-horizon.

A lift is the absolute difference of two means (treatment - control): of conversion rates
(per exposed user: 1 converted, 0 not) or of revenue per exposed user. Both tests use the
unpooled standard error ``se2 = var_t / n_t + var_c / n_c``:

- ``sequential`` (default): the asymptotic confidence sequence and always-valid p-value of
  :mod:`ingester.report.sequential`, with ``n = n_t + n_c``; valid however often it is read;
- ``fixed``: the fixed-horizon interval and two-sided p-value, normal (Wald z-test) for
  rates, Student t with Welch-Satterthwaite degrees of freedom for revenue; valid for one
  look at a sample size fixed in advance only.

Either way the interval excludes 0 exactly when p < alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import ingester.report.sequential as sequential
from ingester.report.distributions import normal_quantile, t_quantile, t_two_sided_p

SEQUENTIAL = "sequential"
FIXED = "fixed"
METHODS = (SEQUENTIAL, FIXED)
# GrowthBook's default when nothing better is known: the sequence is tightest at 5,000
# observations in the two variants compared.
DEFAULT_TUNING_SAMPLE_SIZE = 5000


@dataclass(frozen=True, slots=True)
class Design:
    """How every lift of one report is tested."""

    method: str
    alpha: float
    tuning_sample_size: int
    tuning_from_target: bool

    @property
    def rho(self) -> float:
        return sequential.mixing_rho(self.alpha, self.tuning_sample_size)


def design(method: str, confidence_level: float, target_sample_size: int | None) -> Design:
    """Each comparison involves two variants, so the sequence is tuned to be tightest when
    both have reached ``target_sample_size`` (per variant): N = 2 * target."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    alpha = round(1 - confidence_level, 12)  # 1 - 0.95 is 0.050000000000000044
    if target_sample_size is not None and target_sample_size > 0:
        return Design(method, alpha, 2 * target_sample_size, True)
    return Design(method, alpha, DEFAULT_TUNING_SAMPLE_SIZE, False)


@dataclass(frozen=True, slots=True)
class Lift:
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True, slots=True)
class Sample:
    """The mean of one variant's per-user values: n users, their mean and sample variance."""

    n: int
    mean: float
    variance: float


def welch_df(treatment: Sample, control: Sample) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of two means."""
    vt, vc = treatment.variance / treatment.n, control.variance / control.n
    return (vt + vc) ** 2 / (vt * vt / (treatment.n - 1) + vc * vc / (control.n - 1))


def compare(
    treatment: Sample, control: Sample, plan: Design, student_t: bool = False
) -> Lift | None:
    """The lift of ``treatment`` over ``control``; None when it cannot be tested (fewer than
    two users in a variant, or no variance in either). ``student_t`` makes the fixed-horizon
    test Welch's t-test rather than a z-test; the sequential test is normal either way."""
    if treatment.n < 2 or control.n < 2:
        return None
    se2 = treatment.variance / treatment.n + control.variance / control.n
    if se2 <= 0:
        return None
    estimate = treatment.mean - control.mean
    se = se2**0.5
    if plan.method == SEQUENTIAL:
        n = treatment.n + control.n
        half = sequential.halfwidth(se2, n, plan.alpha, plan.rho)
        p = sequential.always_valid_p_value(estimate, se2, n, plan.rho)
    elif student_t:
        df = welch_df(treatment, control)
        half = t_quantile(1 - plan.alpha / 2, df) * se
        p = t_two_sided_p(estimate / se, df)
    else:
        half = normal_quantile(1 - plan.alpha / 2) * se
        p = t_two_sided_p(estimate / se, float("inf"))
    return Lift(estimate, estimate - half, estimate + half, p)


def proportion(conversions: int, exposures: int) -> Sample:
    """A conversion rate as the mean of 0/1 values, with the binomial variance p (1 - p) that
    the unpooled two-proportion (Wald) test uses."""
    rate = conversions / exposures if exposures else 0.0
    return Sample(exposures, rate, rate * (1 - rate))
