"""The report as one self-contained HTML page: the SRM verdict on top, then the verdict, the
tables, the conversion-rate bars next to the cumulative lift chart, and the planning figures.
No script, no external stylesheet, font or CDN."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from ingester.report.chart import bars, lift_chart
from ingester.report.model import Analysis, ExperimentInfo, VariantStats
from ingester.report.table import (
    conversion_cells,
    conversion_headers,
    headline,
    planning_lines,
    revenue_cells,
    revenue_headers,
    summary,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: .35rem .7rem; border-bottom: 1px solid #d9e2ec; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.control { background: #f0f4f8; }
.srm { padding: .6rem 1rem; border-radius: 4px; font-weight: 600; }
.srm.ok { background: #e3f9e5; color: #05400a; }
.srm.flagged { background: #ffe3e3; color: #610404; border: 2px solid #d64545; }
.srm.unknown { background: #f0f4f8; color: #334e68; }
.verdict { font-size: 1.1rem; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.chart text { font-size: 12px; fill: #334e68; }
.chart text.legend { font-weight: 600; }
"""


def _srm_class(analysis: Analysis) -> str:
    if analysis.srm.p_value is None:
        return "unknown"
    return "flagged" if analysis.srm.flagged else "ok"


def _table(
    headers: Sequence[str],
    variants: Sequence[VariantStats],
    cells: Callable[[VariantStats], Sequence[str]],
    name: str,
) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    rows = []
    for v in variants:
        row = "".join(f"<td>{escape(cell)}</td>" for cell in cells(v))
        opening = '<tr class="control">' if v.is_control else "<tr>"
        rows.append(f"{opening}{row}</tr>")
    return f'<table class="{name}">\n<tr>{head}</tr>\n' + "\n".join(rows) + "\n</table>"


def _paragraphs(lines: Sequence[str]) -> str:
    return "".join(f"<p>{escape(line)}</p>\n" for line in lines)


def render_html(info: ExperimentInfo, analysis: Analysis) -> str:
    title = f"Experiment {info.name}"
    srm, verdict = headline(analysis)
    description = f"<p>{escape(info.description)}</p>\n" if info.description else ""
    variants = analysis.variants
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<div id="srm" class="srm {_srm_class(analysis)}" role="status">{escape(srm)}</div>\n'
        f"<h1>{escape(title)}</h1>\n"
        f'<p id="verdict" class="verdict">{escape(verdict)}</p>\n'
        f"{description}{_paragraphs(summary(info, analysis))}"
        "<h2>Conversion rate</h2>\n"
        f"{_table(conversion_headers(analysis), variants, conversion_cells, 'conversion')}\n"
        f'<div class="charts">\n{bars(analysis)}\n{lift_chart(analysis)}\n</div>\n'
        "<h2>Revenue per exposed user, net of refunds</h2>\n"
        f"{_table(revenue_headers(analysis), variants, revenue_cells, 'revenue')}\n"
        f"<h2>Planning</h2>\n{_paragraphs(planning_lines(analysis))}"
        "</body>\n</html>\n"
    )
