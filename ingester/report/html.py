"""The report as one self-contained HTML page: the table plus an inline SVG bar chart of the
conversion rates with their intervals. No script, no external stylesheet, font or CDN."""

from __future__ import annotations

from html import escape

from ingester.report.query import ExperimentInfo
from ingester.report.render import HEADERS, cells, summary
from ingester.report.stats import Analysis, VariantStats

WIDTH = 640
BAR_HEIGHT = 28
GAP = 14
LABEL_WIDTH = 140
MARGIN = 24

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1f2933; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { padding: .35rem .7rem; border-bottom: 1px solid #d9e2ec; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.control { background: #f0f4f8; }
.chart text { font-size: 12px; fill: #334e68; }
"""


def _scale(analysis: Analysis) -> float:
    highs = [v.ci_high for v in analysis.variants if v.ci_high is not None]
    top = max(highs, default=0.0)
    return top * 1.1 if top > 0 else 1.0


def _bar(index: int, v: VariantStats, scale: float) -> str:
    y = MARGIN + index * (BAR_HEIGHT + GAP)
    plot = WIDTH - LABEL_WIDTH - 2 * MARGIN
    parts = [
        f'<text x="{MARGIN}" y="{y + BAR_HEIGHT / 2 + 4:.1f}">{escape(v.name)}</text>',
    ]
    if v.rate is None or v.ci_low is None or v.ci_high is None:
        parts.append(
            f'<text x="{LABEL_WIDTH + MARGIN}" y="{y + BAR_HEIGHT / 2 + 4:.1f}">no exposures</text>'
        )
        return "\n".join(parts)
    x0 = LABEL_WIDTH + MARGIN
    width = plot * v.rate / scale
    low, high = x0 + plot * v.ci_low / scale, x0 + plot * v.ci_high / scale
    mid = y + BAR_HEIGHT / 2
    colour = "#9fb3c8" if v.is_control else "#2680c2"
    parts += [
        f'<rect x="{x0}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" fill="{colour}">'
        f"<title>{escape(v.name)}: {v.rate:.2%} ({v.ci_low:.2%} to {v.ci_high:.2%})</title></rect>",
        f'<line x1="{low:.1f}" y1="{mid}" x2="{high:.1f}" y2="{mid}" stroke="#102a43" '
        'stroke-width="1.5"/>',
        f'<line x1="{low:.1f}" y1="{mid - 7}" x2="{low:.1f}" y2="{mid + 7}" stroke="#102a43"/>',
        f'<line x1="{high:.1f}" y1="{mid - 7}" x2="{high:.1f}" y2="{mid + 7}" stroke="#102a43"/>',
        f'<text x="{high + 6:.1f}" y="{mid + 4}">{v.rate:.2%}</text>',
    ]
    return "\n".join(parts)


def chart(analysis: Analysis) -> str:
    scale = _scale(analysis)
    count = max(len(analysis.variants), 1)
    height = 2 * MARGIN + count * (BAR_HEIGHT + GAP)
    bars = "\n".join(_bar(i, v, scale) for i, v in enumerate(analysis.variants))
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="conversion rate per variant with 95% intervals">\n'
        f"{bars}\n</svg>"
    )


def _table(analysis: Analysis) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    rows = []
    for v in analysis.variants:
        row = "".join(f"<td>{escape(cell)}</td>" for cell in cells(v))
        opening = '<tr class="control">' if v.is_control else "<tr>"
        rows.append(f"{opening}{row}</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def render_html(info: ExperimentInfo, analysis: Analysis) -> str:
    title = f"Experiment {info.name}"
    lines = "".join(f"<p>{escape(line)}</p>\n" for line in summary(info, analysis))
    description = f"<p>{escape(info.description)}</p>\n" if info.description else ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n{description}{lines}"
        f"{_table(analysis)}\n{chart(analysis)}\n"
        "<p>Intervals: Wilson score, 95%. p-values: pooled two-proportion z-test against "
        "the control, two-sided.</p>\n</body>\n</html>\n"
    )
