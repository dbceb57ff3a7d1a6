"""``ingester experiments report NAME``: per-variant results of one A/B test."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import asyncpg

from core.errors import CommandError
from core.migrate import connect
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
    """Print the report of experiment ``name`` to stdout and return 0. An unknown format or
    option (exit 2), an unknown experiment or a database that cannot be read raise
    :class:`CommandError`, an unreachable one :class:`core.migrate.DatabaseUnreachable`."""
    if fmt not in FORMATS:
        raise CommandError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})", exit_code=2)
    problem = check_options(options or ReportOptions())
    if problem is not None:
        raise CommandError(problem, exit_code=2)
    conn = await connect(settings.require_database_url())
    try:
        built = await build(conn, name, options)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise CommandError(f"cannot read experiment {name!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        await conn.close()
    if built is None:
        raise CommandError(f"unknown experiment {name!r}")
    sys.stdout.write(format_report(*built, fmt).rstrip("\n") + "\n")
    return 0
