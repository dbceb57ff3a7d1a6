"""``ingester experiments report NAME``: per-variant results of one A/B test."""

from __future__ import annotations

import sys

import asyncpg

from core.settings import ConfigError, Settings
from ingester.report.html import render_html
from ingester.report.query import ExperimentInfo, load
from ingester.report.render import render_json, render_table
from ingester.report.stats import Analysis, analyse

FORMATS = ("table", "json", "html")


def format_report(info: ExperimentInfo, analysis: Analysis, fmt: str) -> str:
    if fmt == "json":
        return render_json(info, analysis)
    if fmt == "html":
        return render_html(info, analysis)
    return render_table(info, analysis)


async def build(conn: asyncpg.Connection, name: str) -> tuple[ExperimentInfo, Analysis] | None:
    loaded = await load(conn, name)
    if loaded is None:
        return None
    info, counts = loaded
    return info, analyse(counts, info.confidence_level, info.target_sample_size)


async def report(settings: Settings, name: str, fmt: str) -> int:
    """Print the report of experiment ``name`` to stdout. Exit code: 0 printed, 1 unknown
    experiment or database unreachable, 2 unknown format."""
    if fmt not in FORMATS:
        print(f"error: unknown format {fmt!r} (choose {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    try:
        conn = await asyncpg.connect(settings.require_database_url())
    except (ConfigError, OSError, asyncpg.PostgresError) as exc:
        print(f"error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    try:
        built = await build(conn, name)
    finally:
        await conn.close()
    if built is None:
        print(f"error: unknown experiment {name!r}", file=sys.stderr)
        return 1
    sys.stdout.write(format_report(*built, fmt).rstrip("\n") + "\n")
    return 0
