"""Sample ratio mismatch: do the exposures follow the traffic weights?

Each variant's intended share comes from ``variants.config_json -> 'weight'``. When every
variant has a non-negative number there and they do not all sum to 0, the shares are the
weights divided by their sum; otherwise every variant gets an equal share (and the report says
so). Pearson's chi-square goodness-of-fit test compares the exposures with the shares
(``k - 1`` degrees of freedom over the ``k`` variants with a positive share); exposures of a
variant whose share is 0 are a mismatch by themselves (p = 0). Flagged when p < 0.001: a
broken assignment or a biased exposure log makes every other figure untrustworthy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ingester.report.distributions import chi2_sf

SRM_THRESHOLD = 0.001


@dataclass(frozen=True, slots=True)
class Weights:
    shares: tuple[float, ...]
    from_config: bool


@dataclass(frozen=True, slots=True)
class SrmResult:
    statistic: float | None
    df: int
    p_value: float | None
    flagged: bool


def weights(configured: Sequence[float | None]) -> Weights:
    """Normalised traffic shares; equal shares unless every variant has a usable weight."""
    usable = (
        all(w is not None and math.isfinite(w) and w >= 0 for w in configured)
        and sum(w or 0.0 for w in configured) > 0
    )
    if configured and usable:
        total = sum(w or 0.0 for w in configured)
        return Weights(tuple((w or 0.0) / total for w in configured), True)
    count = len(configured)
    return Weights(tuple(1 / count for _ in configured), False)


def chi_square(observed: Sequence[int], shares: Sequence[float]) -> SrmResult:
    """Pearson's goodness-of-fit test of ``observed`` against ``shares`` (summing to 1)."""
    total = sum(observed)
    active = [(o, s) for o, s in zip(observed, shares, strict=True) if s > 0]
    df = len(active) - 1
    if any(o > 0 and s <= 0 for o, s in zip(observed, shares, strict=True)):
        return SrmResult(math.inf, max(df, 0), 0.0, True)
    if total == 0 or df < 1:
        return SrmResult(None, max(df, 0), None, False)
    statistic = math.fsum((o - s * total) ** 2 / (s * total) for o, s in active)
    p = chi2_sf(statistic, df)
    return SrmResult(statistic, df, p, p < SRM_THRESHOLD)
