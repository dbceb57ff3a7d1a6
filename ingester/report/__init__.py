"""``ingester experiments report NAME``: per-variant results of one A/B test."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import asyncpg

from core.migrate import DatabaseUnreachable, connect
from core.settings import Settings
from ingester.report.html import render_html
from ingester.report.model import Analysis, ExperimentInfo, ReportOptions, check_options
from ingester.report.query import load
from ingester.report.render import render_json
from ingester.report.stats import analyse
from ingester.report.table import render_table

FORMATS = ("table", "json", "html")


def format_report(info: ExperimentInfo, analysis: Analysis, fmt: str) -> str:
    if fmt == "json":
        return render_json(info, analysis)
    if fmt == "html":
        return render_html(info, analysis)
    return render_table(info, analysis)


async def build(
    conn: asyncpg.Connection,
    name: str,
    options: ReportOptions | None = None,
    as_of: datetime | None = None,
) -> tuple[ExperimentInfo, Analysis] | None:
    options = options or ReportOptions()
    loaded = await load(conn, name, as_of or datetime.now(UTC), options.winsorize)
    if loaded is None:
        return None
    info, data = loaded
    return info, analyse(info, data, options)


async def report(
    settings: Settings, name: str, fmt: str, options: ReportOptions | None = None
) -> int:
    """Print the report of experiment ``name`` to stdout. Exit code: 0 printed, 1 unknown
    experiment or database unreachable, 2 unknown format or option; errors are one line on
    stderr."""
    if fmt not in FORMATS:
        return _fail(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})", 2)
    problem = check_options(options or ReportOptions())
    if problem is not None:
        return _fail(problem, 2)
    try:
        conn = await connect(settings.require_database_url())
    except DatabaseUnreachable as exc:
        return _fail(str(exc))
    try:
        built = await build(conn, name, options)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        return _fail(f"cannot read experiment {name!r}: {type(exc).__name__}: {exc}")
    finally:
        await conn.close()
    if built is None:
        return _fail(f"unknown experiment {name!r}")
    sys.stdout.write(format_report(*built, fmt).rstrip("\n") + "\n")
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(f"ingester experiments report: {' '.join(message.split())}", file=sys.stderr)
    return code
