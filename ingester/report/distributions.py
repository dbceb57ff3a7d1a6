"""The distribution functions the report needs, standard library only.

The regularised incomplete gamma and beta functions follow Numerical Recipes (3rd ed.,
sections 6.2 and 6.4): a power series where it converges fast, else a continued fraction
evaluated with the modified Lentz method. Each is checked against scipy in the unit tests.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_EPSILON = 1e-15
_TINY = 1e-300  # keeps the Lentz recurrences away from a division by zero
_MAX_ITERATIONS = 100_000
_STANDARD = NormalDist()


class NoConvergence(ArithmeticError):
    """A series or continued fraction did not converge (arguments far outside any report)."""


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def normal_sf(x: float) -> float:
    """1 - cdf, accurate far in the upper tail."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def normal_quantile(p: float) -> float:
    return _STANDARD.inv_cdf(p)


def _gamma_series(a: float, x: float) -> float:
    """P(a, x) by its power series; converges quickly for x < a + 1."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_MAX_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPSILON:
            return total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    raise NoConvergence(f"incomplete gamma series for a={a}, x={x}")


def _gamma_fraction(a: float, x: float) -> float:
    """Q(a, x) by its continued fraction; converges quickly for x >= a + 1."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPSILON:
            return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h
    raise NoConvergence(f"incomplete gamma fraction for a={a}, x={x}")


def gamma_p(a: float, x: float) -> float:
    """Regularised lower incomplete gamma function P(a, x)."""
    if a <= 0 or x < 0:
        raise ValueError("gamma_p needs a > 0 and x >= 0")
    if x == 0:
        return 0.0
    return _gamma_series(a, x) if x < a + 1 else 1.0 - _gamma_fraction(a, x)


def gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma function Q(a, x) = 1 - P(a, x)."""
    if a <= 0 or x < 0:
        raise ValueError("gamma_q needs a > 0 and x >= 0")
    if x == 0:
        return 1.0
    return 1.0 - _gamma_series(a, x) if x < a + 1 else _gamma_fraction(a, x)


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for X chi-square with ``df`` degrees of freedom."""
    return gamma_q(df / 2.0, x / 2.0) if x > 0 else 1.0


def _beta_fraction(a: float, b: float, x: float) -> float:
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = _TINY if abs(d) < _TINY else d
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_ITERATIONS):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = _TINY if abs(d) < _TINY else d
            c = 1.0 + aa / c
            c = _TINY if abs(c) < _TINY else c
            d = 1.0 / d
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPSILON:
            return h
    raise NoConvergence(f"incomplete beta fraction for a={a}, b={b}, x={x}")


def _stirling_correction(z: float) -> float:
    """ln Gamma(z) - Stirling's main terms, accurate to 1e-17 for z >= 100."""
    z2 = z * z
    return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / (1680 * z2)) / z2) / z2) / z


def _log_beta_ratio(a: float, b: float) -> float:
    """ln Gamma(a + b) - ln Gamma(a) - ln Gamma(b), without the cancellation of three huge
    log-gammas when one argument is large (Welch's t-test with a million users per variant)."""
    if a < b:
        a, b = b, a
    if a < 100:
        return math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    # Stirling for Gamma(a + b) / Gamma(a), the ratio written with log1p
    ratio = (
        (a - 0.5) * math.log1p(b / a)
        + b * math.log(a + b)
        - b
        + _stirling_correction(a + b)
        - _stirling_correction(a)
    )
    return ratio - math.lgamma(b)


def beta_i(a: float, b: float, x: float, complement: float | None = None) -> float:
    """Regularised incomplete beta function I_x(a, b). ``complement`` is 1 - x when the
    caller knows it more precisely than the subtraction would give it."""
    y = 1.0 - x if complement is None else complement
    if a <= 0 or b <= 0 or not 0.0 <= x <= 1.0:
        raise ValueError("beta_i needs a > 0, b > 0 and 0 <= x <= 1")
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    # log1p of the smaller of x and 1 - x: a * ln(x) for a t-test with huge df multiplies
    # any rounding of x by a million.
    log_x = math.log(x) if x < 0.5 else math.log1p(-y)
    log_y = math.log(y) if y < 0.5 else math.log1p(-x)
    front = math.exp(_log_beta_ratio(a, b) + a * log_x + b * log_y)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| > |t|) for Student's T with ``df`` degrees of freedom."""
    if math.isinf(df):
        return 2.0 * normal_sf(abs(t))
    t2 = t * t
    return beta_i(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def _t_density(t: float, df: float) -> float:
    log = _log_beta_ratio(df / 2, 0.5) - 0.5 * math.log(df * math.pi) + 0.5 * math.log(math.pi)
    return math.exp(log - (df + 1) / 2 * math.log1p(t * t / df))


def _cornish_fisher(z: float, df: float) -> float:
    """The t quantile's expansion in 1/df around the normal quantile z (Abramowitz and Stegun
    26.7.5): a start from which Newton's method needs a step or two."""
    z2 = z * z
    return z * (
        1
        + (z2 + 1) / (4 * df)
        + ((5 * z2 + 16) * z2 + 3) / (96 * df**2)
        + (((3 * z2 + 19) * z2 + 17) * z2 - 15) / (384 * df**3)
    )


def t_quantile(p: float, df: float) -> float:
    """The t such that P(T <= t) = p: safeguarded Newton steps on the upper tail, where it
    is accurate, from the Cornish-Fisher start."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError("t_quantile needs 0 < p < 1 and df > 0")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if math.isinf(df):
        return normal_quantile(p)
    tail = 1.0 - p
    z = normal_quantile(p)
    t = _cornish_fisher(z, df) if df >= 3 else z
    low, high = 0.0, math.inf
    for _ in range(500):
        excess = 0.5 * t_two_sided_p(t, df) - tail  # > 0 while t is too small
        if excess > 0:
            low = t
        else:
            high = t
        step = excess / _t_density(t, df)
        # the second test stops the search where the tail's own rounding (about 1e-12 at
        # ten million degrees of freedom) is all that moves it
        if abs(step) <= 1e-13 * t or high - low <= 1e-11 * t:
            return t + step if low < t + step < high else t
        candidate = t + step
        if not low < candidate < high:
            candidate = 2 * t if math.isinf(high) else (low + high) / 2
        t = candidate
    raise NoConvergence(f"t quantile for p={p}, df={df}")
