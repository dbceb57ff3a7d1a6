"""Provider times -> ce_time: lenient for providers, strict RFC 3339 for first-party events."""

from __future__ import annotations

from typing import Any

import pytest

from contract import times


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", id="rfc 3339"),
        pytest.param("2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00.000Z", id="offset"),
        pytest.param("2026-01-01 00:00:00", "2026-01-01T00:00:00.000Z", id="naive is UTC"),
        pytest.param("2026-01-01T00:00:00.5z", "2026-01-01T00:00:00.500Z", id="lower z"),
        pytest.param(1767225600, "2026-01-01T00:00:00.000Z", id="epoch seconds"),
        pytest.param(1767225600.25, "2026-01-01T00:00:00.250Z", id="fractional epoch"),
        pytest.param(" 1767225600 ", "2026-01-01T00:00:00.000Z", id="epoch text"),
        pytest.param("soon", None, id="words"),
        pytest.param("", None, id="empty"),
        pytest.param(True, None, id="boolean"),
        pytest.param(-1, None, id="before 1970"),
        pytest.param(10**20, None, id="far future"),
        pytest.param("0001-01-01T00:00:00+01:00", None, id="before year 1 in UTC"),
        pytest.param(None, None, id="absent"),
        # Digit strings that str.isdigit() accepts but are no epoch time.
        pytest.param("\u00b2", None, id="superscript two"),
        pytest.param("\u0661\u0662\u0663", None, id="arabic-indic digits"),
        pytest.param("9" * 400, None, id="400 digits"),
        pytest.param("9" * 5000, None, id="5000 digits"),
        pytest.param(10**400, None, id="int too large for a float"),
        pytest.param(float("nan"), None, id="nan"),
        pytest.param(float("inf"), None, id="infinity"),
        pytest.param("000000001767225600", None, id="too many digits"),
    ],
)
def test_lenient(value: Any, expected: str | None) -> None:
    assert times.lenient(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.000Z", id="Z"),
        pytest.param("2026-01-01t00:00:00.123456789-01:00", "2026-01-01T01:00:00.123Z", id="ns"),
        pytest.param("2026-01-01 00:00:00+00:00", None, id="space (RFC 3339's date-time has T)"),
        pytest.param("2026-01-01T00:00:00", None, id="no offset"),
        pytest.param("2026-01-01", None, id="date only"),
        pytest.param("20260101T000000Z", None, id="basic format"),
        pytest.param("2026-13-01T00:00:00Z", None, id="month 13"),
        pytest.param(1767225600, None, id="epoch"),
    ],
)
def test_strict_rfc3339(value: Any, expected: str | None) -> None:
    assert times.strict_rfc3339(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1767225600123, "2026-01-01T00:00:00.123Z", id="milliseconds"),
        pytest.param(10**400, None, id="int too large for a float"),
        pytest.param(7_258_118_400_001, None, id="after 2200"),
        pytest.param(-1, None, id="before 1970"),
    ],
)
def test_epoch_milliseconds(value: Any, expected: str | None) -> None:
    assert times.from_epoch(value, scale=1000.0) == expected
