"""Report rendering: aligned table, stable JSON shape, self-contained HTML."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from ingester.report import format_report
from ingester.report.query import ExperimentInfo
from ingester.report.render import p_value
from ingester.report.stats import Analysis, VariantCounts, analyse

T = datetime(2024, 1, 1, tzinfo=UTC)
INFO = ExperimentInfo(
    uuid.uuid4(), "checkout", "Green <button>", "active", True, 0.95, 1000, T, None
)


def analysis(*extra: VariantCounts) -> Analysis:
    return analyse(
        [
            VariantCounts("control", T, 1000, 120, Decimal(1200)),
            VariantCounts("treat<b>", T, 1000, 150, Decimal(1500)),
            *extra,
        ],
        0.95,
        1000,
    )


def test_table_columns_are_aligned() -> None:
    text = format_report(INFO, analysis(VariantCounts("empty", T, 0, 0, Decimal(0))), "table")
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("variant"))
    rows = lines[header : header + 4]
    # Every column but the first is right-aligned: cells end at the same offsets on every row.
    ends = [sorted(m.end() for m in re.finditer(r"\S+(?=\s{2,}|$)", row))[1:] for row in rows]
    assert all(e == ends[0] for e in ends) and len(ends[0]) == 9
    assert rows[1].split()[:4] == ["control", "1000", "120", "12.00%"]
    assert rows[2].split()[-2:] == ["yes", "1.50"]
    assert rows[3].split()[1:] == ["0", "0", "-", "-", "-", "-", "-", "-", "-"]
    assert "target sample size 1000 per variant: not reached" in text  # "empty" has 0


def test_json_shape_is_stable() -> None:
    body = orjson.loads(format_report(INFO, analysis(), "json"))
    assert list(body) == [
        "schema_version",
        "experiment",
        "method",
        "control",
        "target_sample_size_reached",
        "variants",
    ]
    assert body["method"] == {
        "interval": "wilson",
        "interval_level": 0.95,
        "test": "pooled two-proportion z-test, two-sided",
    }
    assert list(body["variants"][0]) == [
        "name",
        "is_control",
        "exposures",
        "conversions",
        "conversion_rate",
        "ci_low",
        "ci_high",
        "absolute_lift",
        "relative_lift",
        "z",
        "p_value",
        "significant",
        "revenue",
        "revenue_per_exposure",
    ]
    assert body["experiment"]["started_at"] == "2024-01-01T00:00:00+00:00"


def test_html_is_self_contained_and_escaped() -> None:
    page = format_report(INFO, analysis(VariantCounts("empty", T, 0, 0, Decimal(0))), "html")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert re.findall(r"(?:src|href)=", page) == []
    assert "<script" not in page
    assert page.count("<svg") == 1 and page.count("<rect") == 2  # no bar without exposures
    assert "treat&lt;b&gt;" in page and "treat<b>" not in page
    assert "Green &lt;button&gt;" in page


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
