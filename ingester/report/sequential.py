"""Asymptotic confidence sequences (Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences", 2023, eqs. 9 and
161), in the two-sample form GrowthBook uses for its sequential testing.

For an estimate ``d`` (here: the difference of two means) with squared standard error ``se2``
after ``n`` observations in all, the per-observation variance is ``s2 = se2 * n`` and the
two-sided (1 - alpha) confidence sequence is ``d +- halfwidth`` with

    halfwidth = sqrt(s2) * sqrt(2 (n rho^2 + 1) / (n rho)^2 * ln(sqrt(n rho^2 + 1) / alpha)).

It covers the true difference at every n at once with probability >= 1 - alpha
(asymptotically), so it may be read every day. ``rho`` sets where it is tightest: choosing
``rho^2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / N`` makes it narrowest at n = N, the sample
size at which a decision is expected (the tuning sample size).

The always-valid p-value is the smallest alpha at which the sequence (with that rho) excludes
0: the inverse of the mixture e-value

    E = exp(rho^2 n d^2 / (2 se2 (n rho^2 + 1))) / sqrt(n rho^2 + 1),   p = min(1, 1 / E).
"""

from __future__ import annotations

import math


def mixing_rho(alpha: float, tuning_sample_size: float) -> float:
    """The rho that makes the sequence tightest after ``tuning_sample_size`` observations."""
    if not 0 < alpha < 1:
        raise ValueError("alpha must lie in (0, 1)")
    if tuning_sample_size <= 0:
        raise ValueError("the tuning sample size must be positive")
    log_alpha = -2 * math.log(alpha)
    return math.sqrt((log_alpha + math.log(log_alpha + 1)) / tuning_sample_size)


def critical_multiplier(n: float, alpha: float, rho: float) -> float:
    """halfwidth / standard error after ``n`` observations: the sequential counterpart of the
    fixed-horizon z_{1 - alpha/2} (always larger than it)."""
    if n <= 0:
        raise ValueError("the confidence sequence needs at least one observation")
    v = n * rho * rho
    return math.sqrt(2 * (v + 1) / v * math.log(math.sqrt(v + 1) / alpha))


def halfwidth(se2: float, n: float, alpha: float, rho: float) -> float:
    """Half-width of the confidence sequence for an estimate with squared standard error
    ``se2`` after ``n`` observations."""
    return math.sqrt(se2) * critical_multiplier(n, alpha, rho)


def always_valid_p_value(estimate: float, se2: float, n: float, rho: float) -> float:
    """The smallest alpha whose confidence sequence (same rho) excludes 0."""
    if se2 <= 0 or n <= 0:
        raise ValueError("the p-value needs a positive variance and sample size")
    v = n * rho * rho
    log_e = rho * rho * n * estimate * estimate / (2 * se2 * (v + 1)) - 0.5 * math.log(v + 1)
    return 1.0 if log_e <= 0 else math.exp(-log_e)
