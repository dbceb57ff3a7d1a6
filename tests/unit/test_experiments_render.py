"""Report rendering: the SRM check first in every format, aligned tables, the JSON shape,
self-contained HTML with its two charts."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from ingester.report import format_report
from ingester.report.model import (
    Analysis,
    DailyCounts,
    ExperimentData,
    ExperimentInfo,
    ReportOptions,
    VariantCounts,
)
from ingester.report.revenue import RevenueSums
from ingester.report.stats import analyse
from ingester.report.table import p_value

T = datetime(2024, 1, 1, tzinfo=UTC)
INFO = ExperimentInfo(
    uuid.uuid4(), "checkout", "Green <button>", "active", True, 0.95, 1000, T, None, 0.05
)


def variant(name: str, n: int, c: int, weight: float | None = None) -> VariantCounts:
    return VariantCounts(name, T, n, c, RevenueSums(n, Decimal(c * 10), Decimal(c * 100)), weight)


def daily(*names: str, days: int = 5) -> tuple[DailyCounts, ...]:
    return tuple(
        DailyCounts(date(2024, 1, 1) + timedelta(days=d), name, 200, 24 + 6 * i, Decimal(10))
        for d in range(days)
        for i, name in enumerate(names)
    )


def analysis(*extra: VariantCounts, options: ReportOptions | None = None) -> Analysis:
    weight = 0.5 if extra else None
    variants = (
        variant("control", 1000, 120, weight),
        variant("treat<b>", 1000, 150, weight),
        *extra,
    )
    data = ExperimentData(variants, daily("control", "treat<b>"), multiple_exposure_users=4)
    return analyse(INFO, data, options or ReportOptions(method="fixed"))


def srm_analysis() -> Analysis:
    variants = (variant("control", 5200, 400), variant("treatment", 4800, 700))
    return analyse(INFO, ExperimentData(variants), ReportOptions(method="fixed"))


def test_table_leads_with_the_srm_check_and_aligns_columns() -> None:
    text = format_report(INFO, analysis(variant("empty", 0, 0, weight=0.0)), "table")
    lines = text.splitlines()
    assert lines[0].startswith("sample ratio check: ok")
    assert lines[1].startswith("winner: treat<b>")
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["variant", "weight"])
    rows = lines[header : header + 4]
    # Every column but the first is right-aligned: cells end at the same offsets on every row.
    ends = [sorted(m.end() for m in re.finditer(r"\S+(?=\s{2,}|$)", row))[1:] for row in rows]
    assert all(e == ends[0] for e in ends) and len(ends[0]) == 11
    assert rows[1].split()[:5] == ["control", "0.50", "1000", "120", "12.00%"]
    assert rows[2].split()[-1] == "yes"
    assert rows[3].split()[1:] == ["0.00", "0", "0", *["-"] * 8]
    assert "users exposed to more than one variant: 4" in text
    assert "target sample size 1000 per variant: not reached" in text  # "empty" has 0


def test_srm_comes_first_and_blocks_the_winner_in_every_format() -> None:
    result = srm_analysis()
    table = format_report(INFO, result, "table").splitlines()
    assert table[0].startswith("SAMPLE RATIO MISMATCH")
    assert table[1].startswith("no winner: the sample ratio mismatch")
    body = orjson.loads(format_report(INFO, result, "json"))
    assert list(body)[1:4] == ["srm_p_value", "srm_flagged", "srm"]
    assert body["srm_flagged"] is True and body["winner"] is None
    assert "sample ratio mismatch" in body["verdict"]
    page = format_report(INFO, result, "html")
    first = page.split("<body>\n", 1)[1].splitlines()[0]
    assert first.startswith('<div id="srm" class="srm flagged"')
    assert "no winner: the sample ratio mismatch" in page


VARIANT_KEYS = [
    "name",
    "is_control",
    "weight",
    "exposures",
    "conversions",
    "rate",
    "ci_low",
    "ci_high",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "relative_lift",
    "p_value",
    "p_value_adjusted",
    "significant",
    "revenue",
    "revenue_per_exposure",
    "revenue_ci_low",
    "revenue_ci_high",
    "revenue_lift",
    "revenue_lift_ci_low",
    "revenue_lift_ci_high",
    "revenue_p_value",
    "revenue_p_value_adjusted",
    "revenue_significant",
    "power",
    "exposures_needed",
]


def test_json_shape_is_stable() -> None:
    body = orjson.loads(format_report(INFO, analysis(), "json"))
    assert list(body) == [
        "schema_version",
        "srm_p_value",
        "srm_flagged",
        "srm",
        "winner",
        "verdict",
        "experiment",
        "method",
        "control",
        "multiple_exposure_users",
        "target_sample_size_reached",
        "planning",
        "variants",
        "timeline",
    ]
    assert body["schema_version"] == 2
    assert body["method"]["name"].startswith("fixed-horizon")
    assert body["method"]["kind"] == "fixed" and body["method"]["adjustment"] == "holm"
    assert list(body["variants"][0]) == VARIANT_KEYS
    assert body["multiple_exposure_users"] == 4
    assert list(body["planning"]) == [
        "minimum_detectable_effect",
        "effect_kind",
        "baseline_rate",
        "alpha",
        "power_target",
        "power",
        "power_at_target",
        "exposures_still_needed",
        "daily_exposures",
        "days_left",
        "days_to_target",
    ]
    assert list(body["timeline"]) == ["control", "treat<b>"]
    point = body["timeline"]["treat<b>"][-1]
    assert list(point) == [
        "day",
        "exposures",
        "conversions",
        "revenue",
        "lift",
        "lift_ci_low",
        "lift_ci_high",
    ]
    assert point["day"] == "2024-01-05" and point["exposures"] == 1000
    assert body["experiment"]["started_at"] == "2024-01-01T00:00:00+00:00"


def test_json_names_the_sequential_method_and_its_tuning() -> None:
    body = orjson.loads(format_report(INFO, analysis(options=ReportOptions()), "json"))
    method = body["method"]
    assert method["kind"] == "sequential" and "confidence sequence" in method["name"]
    assert (method["tuning_sample_size"], method["tuning_from"]) == (2000, "target_sample_size")
    assert method["rho"] > 0 and method["alpha"] == 0.05


def test_html_is_self_contained_and_escaped() -> None:
    page = format_report(INFO, analysis(variant("empty", 0, 0, weight=0.0)), "html")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert re.findall(r"(?:src|href)=", page) == []
    assert "<script" not in page and "<link" not in page
    assert page.count("<svg") == 2 and page.count('<rect x="164"') == 2  # no bar at 0
    assert "treat&lt;b&gt;" in page and "treat<b>" not in page
    assert "Green &lt;button&gt;" in page


def test_lift_chart_has_a_line_and_a_band_per_treatment() -> None:
    page = format_report(INFO, analysis(variant("c", 1000, 130, weight=0.5)), "html")
    chart = page[page.index('<svg class="chart lift-chart"') :]
    chart = chart[: chart.index("</svg>")]
    assert re.findall(r'class="lift" data-variant="([^"]+)"', chart) == ["treat&lt;b&gt;"]
    assert len(re.findall(r'class="band" data-variant="treat&lt;b&gt;"', chart)) == 1
    assert 'class="zero"' in chart  # "c" has no daily rows, so no line


def test_lift_chart_without_data_says_so() -> None:
    variants = (variant("control", 0, 0), variant("b", 0, 0))
    result = analyse(INFO, ExperimentData(variants), ReportOptions())
    page = format_report(INFO, result, "html")
    assert "no exposures yet" in page and 'class="lift"' not in page


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(None, "-", id="none"),
        pytest.param(0.04964, "0.0496", id="four places"),
        pytest.param(0.00001, "<0.0001", id="tiny"),
    ],
)
def test_p_value_format(value: float | None, text: str) -> None:
    assert p_value(value) == text
