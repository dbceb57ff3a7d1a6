"""The console's pages (GET): overview, parked events, dead letters, event lookup, replay.
Each reads through :mod:`consumers` (which returns data) and renders a template; a page
asked with ``?pii=1`` shows personal data in full and leaves an audit line."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from consumers import db, lookup
from consumers.lag import broker_ready
from consumers.mend import DlqFilter, dead_letter_page
from consumers.overview import applied_per_minute, dead_letters_by_error, skipped_by_reason
from consumers.pending import browse
from consumers.service import database_ok
from contract.topics import STREAM_OF_SOURCE, STREAMS
from ingester.console.charts import line_chart
from ingester.console.context import REFRESH_S, audit, console, here, render, shows_pii
from ingester.console.sampler import UNAVAILABLE

SOURCES = list(STREAM_OF_SOURCE)
APPLIED_MINUTES = 10
PAGE_ROWS = 50


def _revealed(request: Request, page: str, count: int) -> None:
    if shows_pii(request):
        audit(request, "show personal data", page, count)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    state = console(request)
    database, broker = await asyncio.gather(database_ok(state.pool), broker_ready(state.settings))
    ready = database and broker
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "database": database, "broker": broker},
        status_code=200 if ready else 503,
    )


async def overview(request: Request) -> Response:
    state = console(request)
    database, broker = await asyncio.gather(database_ok(state.pool), broker_ready(state.settings))
    if not state.sampler.history:
        await state.sampler.sample()
    tables: dict[str, Any] = {}
    problem = None
    try:
        async with db.connection(state.pool) as conn:
            tables = {
                "applied": await applied_per_minute(conn, APPLIED_MINUTES),
                "parked": await browse.summary(conn),
                "dead": await dead_letters_by_error(conn),
                "skipped": await skipped_by_reason(conn),
            }
    except UNAVAILABLE as exc:
        problem = f"database: {type(exc).__name__}: {exc}"
    history = list(state.sampler.history)
    charts = [
        line_chart([(s.at, s.lag) for s in history], "consumer lag, records", "records", "lag"),
        line_chart([(s.at, s.rate) for s in history], "applied, events/s", "events/s", "rate"),
    ]
    applied = tables.get("applied", [])
    latest = max((a.minute for a in applied), default=None)
    last_minute = sum(a.events for a in applied if a.minute == latest)
    return render(
        request,
        "overview.html",
        {
            "ready": {"database": database, "broker": broker},
            "partitions": state.sampler.partitions,
            "sample_problem": state.sampler.problem,
            "problem": problem,
            "charts": charts,
            "per_minute": _per_minute(applied),
            "rate_10min": sum(a.events for a in applied) / (APPLIED_MINUTES * 60),
            "rate_last": last_minute / 60,
            "refresh": REFRESH_S,
            **tables,
        },
    )


def _per_minute(applied: list[Any]) -> list[tuple[Any, dict[str, int]]]:
    rows: dict[Any, dict[str, int]] = {}
    for a in applied:
        rows.setdefault(a.minute, {})[a.source] = a.events
    return sorted(rows.items(), reverse=True)


async def parked(request: Request) -> Response:
    state = console(request)
    reason = request.query_params.get("reason")
    source = request.query_params.get("source")
    newest = request.query_params.get("order", "newest") != "oldest"
    rows = []
    async with db.connection(state.pool) as conn:
        groups = await browse.by_reason_and_source(conn)
        if reason is not None and source is not None:
            rows = await browse.page(conn, reason, source, newest=newest, limit=PAGE_ROWS)
    _revealed(request, "parked", len(rows))
    return render(
        request,
        "parked.html",
        {
            "groups": groups,
            "rows": rows,
            "reason": reason,
            "source": source,
            "newest": newest,
            "total": sum(g.events for g in groups),
            "refresh": REFRESH_S if not rows else 0,
        },
    )


def _cursor(text: str | None) -> tuple[int, int] | None:
    partition, _, offset = (text or "").partition(":")
    if partition.isdigit() and offset.isdigit():
        return int(partition), int(offset)
    return None


def dlq_filter(fields: Any) -> DlqFilter:
    return DlqFilter(
        error=(fields.get("error") or "").strip(),
        topic=(fields.get("topic") or "").strip(),
        text=(fields.get("text") or "").strip(),
    )


async def dead_letters(request: Request) -> Response:
    state = console(request)
    match = dlq_filter(request.query_params)
    after = _cursor(request.query_params.get("after"))
    page = await dead_letter_page(state.settings, after=after, match=match, limit=PAGE_ROWS)
    _revealed(request, "dead letters", len(page.entries))
    return render(
        request,
        "dead_letters.html",
        {
            "page": page,
            "match": match,
            "after": after,
            "max_replays": state.settings.dlq_max_replays,
        },
    )


async def event_lookup(request: Request) -> Response:
    state = console(request)
    term = (request.query_params.get("q") or "").strip()[:200]
    by = "user" if request.query_params.get("by") == "user" else "id"
    keys: list[str] = []
    events: list[lookup.Whereabouts] = []
    records: dict[int, Any] = {}
    if term:
        async with db.connection(state.pool) as conn:
            if by == "id":
                events = await lookup.by_id(conn, term, SOURCES)
            else:
                keys, events = await lookup.by_user(conn, term)
        if by == "id":
            for index, event in enumerate(events):
                if event.position is not None:
                    records[index] = await lookup.fetch_record(state.settings, event.position)
        _revealed(request, f"lookup by {by}", len(events))
    return render(
        request,
        "lookup.html",
        {"term": term, "by": by, "keys": keys, "events": events, "records": records},
    )


async def replay_page(request: Request) -> Response:
    state = console(request)
    run = state.replays.last
    return render(
        request,
        "replay.html",
        {"run": run, "streams": STREAMS, "refresh": REFRESH_S if run and run.running else 0},
    )


async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": request.query_params.get("next", "/")})


async def refused(request: Request) -> Response:
    """What a request without the token or a session gets: the login form, 401 (which leads
    back to the page asked for)."""
    target = here(request) if request.method in ("GET", "HEAD") else "/"
    return render(request, "login.html", {"next": target}, status_code=401)
