"""Inline SVG charts of the HTML report (no script, no external resource).

- ``bars``: each variant's conversion rate with its interval as an error bar;
- ``lift_chart``: per treatment, the cumulative lift in conversion rate over the control day
  by day (a line) inside the interval of the report's method at each day (a band): with the
  sequential method, the confidence sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from ingester.report.lift import SEQUENTIAL, Lift
from ingester.report.model import Analysis, TimelinePoint, VariantStats

WIDTH = 640
BAR_HEIGHT = 28
GAP = 14
LABEL_WIDTH = 140
MARGIN = 24
PALETTE = ("#2680c2", "#d64545", "#3ebd93", "#f0b429", "#8662c7", "#f35627")
LIFT_HEIGHT = 280
LIFT_LEFT, LIFT_RIGHT, LIFT_TOP, LIFT_BOTTOM = 64, 110, 28, 40


def _bar(index: int, v: VariantStats, scale: float) -> str:
    y = MARGIN + index * (BAR_HEIGHT + GAP)
    plot = WIDTH - LABEL_WIDTH - 2 * MARGIN
    mid = y + BAR_HEIGHT / 2
    label = f'<text x="{MARGIN}" y="{mid + 4:.1f}">{escape(v.name)}</text>'
    rate, low, high = v.rate.value, v.rate.ci_low, v.rate.ci_high
    if rate is None or low is None or high is None:
        return label + f'\n<text x="{LABEL_WIDTH + MARGIN}" y="{mid + 4:.1f}">no exposures</text>'
    x0 = LABEL_WIDTH + MARGIN
    x_low, x_high = x0 + plot * low / scale, x0 + plot * high / scale
    colour = "#9fb3c8" if v.is_control else "#2680c2"
    return "\n".join(
        [
            label,
            f'<rect x="{x0}" y="{y}" width="{plot * rate / scale:.1f}" height="{BAR_HEIGHT}" '
            f'fill="{colour}"><title>{escape(v.name)}: {rate:.2%} ({low:.2%} to {high:.2%})'
            "</title></rect>",
            f'<line x1="{x_low:.1f}" y1="{mid}" x2="{x_high:.1f}" y2="{mid}" stroke="#102a43" '
            'stroke-width="1.5"/>',
            f'<line x1="{x_low:.1f}" y1="{mid - 7}" x2="{x_low:.1f}" y2="{mid + 7}" '
            'stroke="#102a43"/>',
            f'<line x1="{x_high:.1f}" y1="{mid - 7}" x2="{x_high:.1f}" y2="{mid + 7}" '
            'stroke="#102a43"/>',
            f'<text x="{x_high + 6:.1f}" y="{mid + 4}">{rate:.2%}</text>',
        ]
    )


def bars(analysis: Analysis) -> str:
    top = max((v.rate.ci_high for v in analysis.variants if v.rate.ci_high), default=0.0)
    scale = top * 1.1 if top > 0 else 1.0
    height = 2 * MARGIN + max(len(analysis.variants), 1) * (BAR_HEIGHT + GAP)
    body = "\n".join(_bar(i, v, scale) for i, v in enumerate(analysis.variants))
    return (
        f'<svg class="chart bars" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="conversion '
        f'rate per variant with {analysis.confidence_level:.0%} intervals">\n{body}\n</svg>'
    )


def _segments(points: Sequence[TimelinePoint]) -> list[list[tuple[int, Lift]]]:
    """Runs of consecutive days on which the lift is defined, as (day index, lift)."""
    runs: list[list[tuple[int, Lift]]] = [[]]
    for i, point in enumerate(points):
        if point.lift is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((i, point.lift))
    return [run for run in runs if run]


def _y_range(series: Sequence[Sequence[TimelinePoint]]) -> tuple[float, float]:
    """Zero, the estimates after the first quarter of the days and the latest intervals: the
    first days' wild estimates and very wide intervals are clipped rather than flattening
    the rest of the chart."""
    values = [0.0]
    for points in series:
        lifts = [lift for run in _segments(points[len(points) // 4 :]) for _, lift in run]
        values += [lift.estimate for lift in lifts]
        if lifts:
            values += [lifts[-1].ci_low, lifts[-1].ci_high]
    low, high = min(values), max(values)
    pad = (high - low) * 0.15 or 0.01
    return low - pad, high + pad


def _path(points: Sequence[tuple[float, float]]) -> str:
    return "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _variant(
    name: str,
    colour: str,
    runs: list[list[tuple[int, Lift]]],
    x: Callable[[int], float],
    y: Callable[[float], float],
    plot_w: float,
    title: str,
) -> list[str]:
    """The band (the interval at each day), the line (the estimate) and the name of one
    treatment; a day without a defined lift breaks both."""
    label = escape(name, quote=True)
    band = " ".join(
        _path(
            [(x(i), y(lift.ci_high)) for i, lift in run]
            + [(x(i), y(lift.ci_low)) for i, lift in reversed(run)]
        )
        + " Z"
        for run in runs
    )
    line = " ".join(_path([(x(i), y(lift.estimate)) for i, lift in run]) for run in runs)
    legend_y = min(max(y(runs[-1][-1][1].estimate), LIFT_TOP + 8), LIFT_HEIGHT - LIFT_BOTTOM)
    return [
        f'<path class="band" data-variant="{label}" d="{band}" fill="{colour}" '
        f'fill-opacity="0.18" stroke="none" clip-path="url(#lift-plot)">'
        f"<title>{label}: {title}</title></path>",
        f'<path class="lift" data-variant="{label}" d="{line}" fill="none" stroke="{colour}" '
        'stroke-width="2" clip-path="url(#lift-plot)"/>',
        f'<text class="legend" x="{LIFT_LEFT + plot_w + 6}" y="{legend_y + 4:.1f}" '
        f'fill="{colour}">{label}</text>',
    ]


def lift_chart(analysis: Analysis) -> str:
    treatments = [v.name for v in analysis.variants if not v.is_control]
    series = [analysis.timeline.get(name, ()) for name in treatments]
    days = max((len(points) for points in series), default=0)
    plot_w = WIDTH - LIFT_LEFT - LIFT_RIGHT
    plot_h = LIFT_HEIGHT - LIFT_TOP - LIFT_BOTTOM
    low, high = _y_range(series)

    def x(i: int) -> float:
        return LIFT_LEFT + (plot_w * i / (days - 1) if days > 1 else plot_w / 2)

    def y(value: float) -> float:
        return LIFT_TOP + plot_h * (high - value) / (high - low)

    kind = "confidence sequence" if analysis.design.method == SEQUENTIAL else "interval"
    title = f"{analysis.confidence_level:.0%} {kind}"
    parts = [
        f'<text class="caption" x="{LIFT_LEFT}" y="{LIFT_TOP - 10}">lift in conversion rate over '
        f"the control, percentage points; band: {escape(title)}</text>",
        f'<clipPath id="lift-plot"><rect x="{LIFT_LEFT}" y="{LIFT_TOP}" width="{plot_w}" '
        f'height="{plot_h}"/></clipPath>',
        f'<rect class="frame" x="{LIFT_LEFT}" y="{LIFT_TOP}" width="{plot_w}" '
        f'height="{plot_h}" fill="none" stroke="#bcccdc"/>',
    ]
    for step in range(5):
        value = low + (high - low) * step / 4
        parts.append(
            f'<text x="{LIFT_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{value * 100:+.1f} pp</text>"
        )
    parts.append(
        f'<line class="zero" x1="{LIFT_LEFT}" y1="{y(0):.1f}" x2="{LIFT_LEFT + plot_w}" '
        f'y2="{y(0):.1f}" stroke="#486581" stroke-dasharray="4 3"/>'
    )
    for index, (name, points) in enumerate(zip(treatments, series, strict=True)):
        runs = _segments(points)
        if runs:
            parts += _variant(name, PALETTE[index % len(PALETTE)], runs, x, y, plot_w, title)
    if days:
        longest = max(series, key=len)
        first_day, last_day = longest[0].day, longest[-1].day
        base = LIFT_TOP + plot_h + 16
        parts += [
            f'<text x="{LIFT_LEFT}" y="{base}">{first_day.isoformat()}</text>',
            f'<text x="{LIFT_LEFT + plot_w}" y="{base}" text-anchor="end">'
            f"{last_day.isoformat()}</text>",
        ]
    else:
        parts.append(f'<text x="{LIFT_LEFT + 8}" y="{LIFT_TOP + 20}">no exposures yet</text>')
    body = "\n".join(parts)
    return (
        f'<svg class="chart lift-chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{LIFT_HEIGHT}" viewBox="0 0 {WIDTH} {LIFT_HEIGHT}" role="img" '
        'aria-label="cumulative lift in conversion rate over the control with its '
        f'{title}, day by day">\n{body}\n</svg>'
    )
