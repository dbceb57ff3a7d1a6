"""Revenue per exposed user, net of refunds, as a mean over every exposed user (0 for those
who bought nothing).

A user's net revenue in an experiment is the sum of ``conversion_value`` over their
conversions of any other type minus the sum over their ``refund`` conversions (refunds are
stored as positive amounts). With winsorisation at percentile P, each user's net revenue is
first capped at the P-th percentile (linear interpolation, rounded to cents) of the positive
net revenues of the experiment's buyers, all variants pooled: percentiles over every exposed
user would be 0 at any usual conversion rate. Negative net revenues are never capped.

The per-variant interval is the Student t interval of the mean (n - 1 degrees of freedom);
the lift of revenue per exposed user is tested with :func:`ingester.report.lift.compare`
(Welch's t-test in fixed-horizon mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ingester.report.distributions import t_quantile
from ingester.report.lift import Sample


@dataclass(frozen=True, slots=True)
class RevenueSums:
    """One variant's sums of per-user net revenue over its exposed users."""

    exposures: int
    total: Decimal
    total_squares: Decimal


def sample(sums: RevenueSums) -> Sample | None:
    """Mean and sample variance (n - 1 denominator) of per-user revenue; None without
    exposures. The variance is computed in exact decimal arithmetic from the sums."""
    n = sums.exposures
    if n <= 0:
        return None
    mean = sums.total / n
    if n == 1:
        return Sample(1, float(mean), 0.0)
    variance = (sums.total_squares - sums.total * mean) / (n - 1)
    return Sample(n, float(mean), max(float(variance), 0.0))


def mean_interval(values: Sample, alpha: float) -> tuple[float, float] | None:
    """Two-sided (1 - alpha) Student t interval of the mean; None below two users."""
    if values.n < 2:
        return None
    half = t_quantile(1 - alpha / 2, values.n - 1) * (values.variance / values.n) ** 0.5
    return values.mean - half, values.mean + half
