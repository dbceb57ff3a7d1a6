"""The overview's small inline SVG charts (no script, no external resource), drawn like the
experiment report's (``ingester/report/chart.py``): one series over time, a line and the
area under it, the largest value and the first and last times as labels. The SVG scales to
its box (``viewBox``), so it fits a phone as well as a laptop."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 22, 24

Point = tuple[datetime, float | None]


def _runs(points: Sequence[Point]) -> list[list[tuple[int, float]]]:
    """Runs of consecutive samples that have a value (a failed sample breaks the line)."""
    runs: list[list[tuple[int, float]]] = [[]]
    for index, (_, value) in enumerate(points):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((index, value))
    return [run for run in runs if run]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def line_chart(points: Sequence[Point], title: str, unit: str, name: str) -> str:
    """``points`` (time, value or None) as a line chart; ``name`` is its CSS class."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for _, v in points if v is not None]
    top = max(values, default=0.0) or 1.0

    def x(index: int) -> float:
        return LEFT + (plot_w * index / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [
        f'<text class="caption" x="{LEFT}" y="{TOP - 8}">{escape(title)}</text>',
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#bcccdc"/>',
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end">{_number(top)}</text>',
        f'<text x="{LEFT - 6}" y="{TOP + plot_h}" text-anchor="end">0</text>',
    ]
    for run in _runs(points):
        if len(run) == 1:  # a lone sample: a dot, a line needs two
            ((i, v),) = run
            parts.append(
                f'<circle class="dot" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#2680c2"/>'
            )
            continue
        line = " L".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run)
        base = TOP + plot_h
        area = f"M{x(run[0][0]):.1f},{base} L{line} L{x(run[-1][0]):.1f},{base} Z"
        parts += [
            f'<path class="area" d="{area}" fill="#2680c2" fill-opacity="0.15" stroke="none"/>',
            f'<path class="line" d="M{line}" fill="none" stroke="#2680c2" stroke-width="2"/>',
        ]
    if points:
        first, last = points[0][0], points[-1][0]
        parts += [
            f'<text x="{LEFT}" y="{HEIGHT - 6}">{first:%H:%M:%S}</text>',
            f'<text x="{LEFT + plot_w}" y="{HEIGHT - 6}" text-anchor="end">{last:%H:%M:%S}'
            " UTC</text>",
        ]
    if not values:
        parts.append(f'<text x="{LEFT + 8}" y="{TOP + 20}">no samples yet</text>')
    latest = f"latest {_number(values[-1])} {unit}" if values else "no samples yet"
    body = "\n".join(parts)
    return (
        f'<svg class="chart {escape(name)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}, {latest}">'
        f"\n{body}\n</svg>"
    )
