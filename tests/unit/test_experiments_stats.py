"""Report statistics against values computed by hand (z = 1.959964 for 95 %)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingester.report.stats import (
    VariantCounts,
    analyse,
    choose_control,
    critical_value,
    two_proportion_z_test,
    wilson_interval,
)

T = datetime(2024, 1, 1, tzinfo=UTC)


def counts(name: str, n: int, c: int, revenue: int = 0, age: int = 0) -> VariantCounts:
    return VariantCounts(name, T + timedelta(days=age), n, c, Decimal(revenue))


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        pytest.param(0.95, 1.959964, id="95%"),
        pytest.param(0.99, 2.575829, id="99%"),
        pytest.param(0.80, 1.281552, id="80%"),
    ],
)
def test_critical_value(level: float, expected: float) -> None:
    assert critical_value(level) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # centre = (p + z²/2n) / (1 + z²/n); half = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²)
        pytest.param(120, 1000, 0.10130, 0.14161, id="120 of 1000"),
        pytest.param(150, 1000, 0.12921, 0.17347, id="150 of 1000"),
        pytest.param(50, 100, 0.40383, 0.59617, id="half"),
        pytest.param(0, 10, 0.0, 0.27753, id="none converted"),
        pytest.param(10, 10, 0.72247, 1.0, id="all converted"),
    ],
)
def test_wilson_interval(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_needs_a_trial() -> None:
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(0, 0)


@pytest.mark.parametrize(
    ("a", "b", "z", "p"),
    [
        # pooled 0.135; SE sqrt(0.135 * 0.865 * 0.002) = 0.0152823; z = 0.03 / SE
        pytest.param((120, 1000), (150, 1000), 1.96305, 0.04964, id="hand fixture"),
        pytest.param((150, 1000), (120, 1000), -1.96305, 0.04964, id="reversed"),
        pytest.param((200, 1000), (200, 1000), 0.0, 1.0, id="equal"),
        # pooled 0.2; SE sqrt(0.2 * 0.8 * (1/500 + 1/500)) = 0.0252982; z = 0.1 / SE
        pytest.param((75, 500), (125, 500), 3.95285, 0.0000772, id="strong"),
    ],
)
def test_two_proportion_z_test(a: tuple[int, int], b: tuple[int, int], z: float, p: float) -> None:
    result = two_proportion_z_test(a[0], a[1], b[0], b[1])
    assert result is not None
    assert result[0] == pytest.approx(z, abs=1e-5)
    assert result[1] == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param((0, 0), (1, 10), id="no control exposures"),
        pytest.param((0, 10), (0, 10), id="no conversions at all"),
        pytest.param((10, 10), (10, 10), id="everyone converted"),
    ],
)
def test_two_proportion_z_test_undefined(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert two_proportion_z_test(a[0], a[1], b[0], b[1]) is None


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


def test_analyse_hand_fixture() -> None:
    result = analyse(
        [counts("control", 1000, 120, 1200), counts("treatment", 1000, 150, 1500, age=1)],
        confidence_level=0.95,
        target_sample_size=1000,
    )
    control, treatment = result.variants
    assert result.control == "control" and result.target_reached is True
    assert control.is_control and control.p_value is None and control.significant is None
    assert control.revenue_per_exposure == pytest.approx(1.2)
    assert treatment.absolute_lift == pytest.approx(0.03)
    assert treatment.relative_lift == pytest.approx(0.25)
    assert treatment.p_value == pytest.approx(0.04964, abs=1e-5)
    assert treatment.significant is True
    assert treatment.revenue_per_exposure == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("level", "significant"),
    [
        pytest.param(0.95, True, id="p 0.0496 < 0.05"),
        pytest.param(0.96, False, id="p 0.0496 >= 0.04"),
        pytest.param(0.99, False, id="p 0.0496 >= 0.01"),
    ],
)
def test_significance_follows_confidence_level(level: float, significant: bool) -> None:
    result = analyse([counts("control", 1000, 120), counts("b", 1000, 150)], level, None)
    assert result.variants[1].significant is significant
    assert result.target_reached is None


@pytest.mark.parametrize(
    ("target", "reached"),
    [
        pytest.param(999, True, id="both above"),
        pytest.param(1000, True, id="both exactly"),
        pytest.param(1001, False, id="neither"),
        pytest.param(None, None, id="no target"),
    ],
)
def test_target_sample_size_needs_every_variant(target: int | None, reached: bool | None) -> None:
    result = analyse([counts("control", 1000, 1), counts("b", 1200, 1)], 0.95, target)
    assert result.target_reached is reached


def test_zero_exposures_and_zero_control_rate() -> None:
    result = analyse([counts("control", 100, 0), counts("b", 100, 5), counts("c", 0, 0)], 0.95, 100)
    control, b, c = result.variants
    assert b.absolute_lift == pytest.approx(0.05)
    assert b.relative_lift is None  # undefined against a 0 % control
    assert b.p_value is not None
    assert (c.rate, c.ci_low, c.p_value, c.revenue_per_exposure) == (None, None, None, None)
    assert result.target_reached is False
    assert control.rate == 0.0
