"""The report's distribution functions against scipy, over a wide grid of arguments."""

from __future__ import annotations

import itertools

import pytest
from scipy import special, stats

from ingester.report.distributions import (
    beta_i,
    chi2_sf,
    gamma_p,
    gamma_q,
    normal_cdf,
    normal_quantile,
    normal_sf,
    t_cdf,
    t_quantile,
    t_two_sided_p,
)

SHAPES = [0.5, 1, 1.5, 2, 3.5, 10, 24.5, 49.5, 100, 1000]
POINTS = [1e-8, 0.01, 0.5, 1, 2, 5, 10, 30, 80, 99, 101, 500, 999, 1001, 3000]


@pytest.mark.parametrize(("a", "x"), list(itertools.product(SHAPES, POINTS)))
def test_incomplete_gamma_matches_scipy(a: float, x: float) -> None:
    q, reference_q = gamma_q(a, x), float(special.gammaincc(a, x))
    assert gamma_p(a, x) == pytest.approx(float(special.gammainc(a, x)), abs=1e-12)
    assert q == pytest.approx(reference_q, abs=1e-12)
    if reference_q > 1e-300:  # tail probabilities are what the SRM test reads: relative too
        assert q == pytest.approx(reference_q, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "x", "p"),
    [
        pytest.param(1, 0.0, 0.0, id="x = 0"),
        pytest.param(1, 2.0, 1 - 0.1353352832366127, id="exponential"),
        pytest.param(0.5, 1.0, 0.8427007929497149, id="erf(1)"),
    ],
)
def test_incomplete_gamma_closed_forms(a: float, x: float, p: float) -> None:
    assert gamma_p(a, x) == pytest.approx(p, abs=1e-14)
    assert gamma_q(a, x) == pytest.approx(1 - p, abs=1e-14)


@pytest.mark.parametrize(
    ("x", "df"),
    [
        (x, df)
        for df in (1, 2, 3, 4, 7, 19, 99)
        for x in (0.0, 0.001, 0.5, 1, 3.84, 6.63, 10.83, 16, 50, 200, 1000, 20000)
    ],
)
def test_chi2_survival_matches_scipy(x: float, df: int) -> None:
    reference = float(stats.chi2.sf(x, df))
    assert chi2_sf(x, df) == pytest.approx(reference, abs=1e-12, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "x"),
    list(
        itertools.product(
            [0.5, 1, 2.5, 10, 100, 5000],
            [0.5, 1, 3, 50, 1000],
            [0.0, 1e-6, 0.01, 0.2, 0.5, 0.7, 0.99, 0.999999, 1.0],
        )
    ),
)
def test_incomplete_beta_matches_scipy(a: float, b: float, x: float) -> None:
    assert beta_i(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), abs=1e-10)


DFS = [1, 2, 3, 5.5, 10, 29.7, 100, 1000, 1e5, 1e7]


@pytest.mark.parametrize(("t", "df"), list(itertools.product([0, 0.1, -1, 1.96, 3, -10, 50], DFS)))
def test_student_t_tails_match_scipy(t: float, df: float) -> None:
    reference = 2 * float(stats.t.sf(abs(t), df))
    assert t_two_sided_p(t, df) == pytest.approx(reference, abs=1e-12, rel=1e-7)
    assert t_cdf(t, df) == pytest.approx(float(stats.t.cdf(t, df)), abs=1e-10)


@pytest.mark.parametrize(
    ("p", "df"),
    list(itertools.product([0.025, 0.4, 0.5, 0.6, 0.9, 0.975, 0.995, 0.9995, 1 - 1e-7], DFS)),
)
def test_student_t_quantile_matches_scipy(p: float, df: float) -> None:
    reference = float(stats.t.ppf(p, df))
    assert t_quantile(p, df) == pytest.approx(reference, abs=1e-8, rel=1e-8)


def test_student_t_with_infinite_df_is_normal() -> None:
    assert t_two_sided_p(1.959963984540054, float("inf")) == pytest.approx(0.05, abs=1e-12)
    assert t_quantile(0.975, float("inf")) == pytest.approx(1.959963984540054, abs=1e-12)


@pytest.mark.parametrize("x", [-8, -3, -1.5, 0, 0.3, 1.96, 5, 9, 30])
def test_normal_matches_scipy(x: float) -> None:
    assert normal_cdf(x) == pytest.approx(float(stats.norm.cdf(x)), abs=1e-15, rel=1e-12)
    assert normal_sf(x) == pytest.approx(float(stats.norm.sf(x)), abs=1e-15, rel=1e-12)


@pytest.mark.parametrize("p", [1e-10, 0.001, 0.025, 0.5, 0.8, 0.975, 0.9995])
def test_normal_quantile_matches_scipy(p: float) -> None:
    assert normal_quantile(p) == pytest.approx(float(stats.norm.ppf(p)), abs=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: gamma_p(0, 1), "a > 0", id="gamma shape"),
        pytest.param(lambda: gamma_q(1, -1), "x >= 0", id="gamma point"),
        pytest.param(lambda: beta_i(1, 1, 1.5), "0 <= x <= 1", id="beta point"),
        pytest.param(lambda: t_quantile(1.0, 3), "0 < p < 1", id="t probability"),
    ],
)
def test_arguments_outside_the_domain_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
