"""The console's state (clients, sessions, sampler, replays), how a page is rendered (Jinja2
templates, autoescaped, with the filters that mask personal data) and the audit log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from core.kafka import StartOnSend
from core.settings import Settings
from ingester.console.auth import Operator, Sessions
from ingester.console.mask import mask_json, mask_text
from ingester.console.replays import Replays
from ingester.console.sampler import Sampler

TEMPLATES = Path(__file__).parent / "templates"
REFRESH_S = 10  # how often a page that follows the pipeline reloads itself (with JavaScript)
PREVIEW_CHARS = 600

audit_log = logging.getLogger("ingester.console.audit")


@dataclass(slots=True)
class Console:
    settings: Settings
    sessions: Sessions
    pool: asyncpg.Pool
    producer: StartOnSend
    sampler: Sampler
    replays: Replays


def console(request: Request) -> Console:
    state: Console = request.app.state.console
    return state


def operator(request: Request) -> Operator:
    who: Operator = request.state.operator
    return who


def audit(request: Request, what: str, scope: str, count: int) -> None:
    """One line on the audit log: who did what, to what, to how many events or records."""
    audit_log.info(
        "console action",
        extra={"who": operator(request).who, "what": what, "scope": scope, "count": count},
    )


def shows_pii(request: Request) -> bool:
    return request.query_params.get("pii") == "1"


def _personal(text: object, shown: bool) -> str:
    value = "" if text is None else str(text)
    return value if shown else mask_text(value)


def _preview(data: object, shown: bool, limit: int = PREVIEW_CHARS) -> str:
    """Decoded JSON (or bytes of it) as indented text, masked unless ``shown``, cut at
    ``limit`` characters."""
    if isinstance(data, bytes):
        raw = data
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = raw.decode("utf-8", "replace")
    text = orjson.dumps(data if shown else mask_json(data), option=orjson.OPT_INDENT_2).decode()
    return text if len(text) <= limit else text[:limit] + " ..."


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return _duration(seconds) + " ago"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{max(0.0, seconds):.0f} s"


templates = Jinja2Templates(directory=TEMPLATES)
templates.env.filters.update(
    personal=_personal,
    preview=_preview,
    ago=_ago,
    duration=_duration,
    when=lambda d: d.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-",
)


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """A page: ``template`` with ``context`` and what every page has (the operator, the CSRF
    token of the session, the script nonce, the personal-data toggle, a notice)."""
    who: Operator | None = getattr(request.state, "operator", None)
    base = {
        "operator": who,
        "csrf": console(request).sessions.csrf(who.session) if who else "",
        "nonce": getattr(request.state, "nonce", ""),
        "pii": shows_pii(request),
        "path": request.url.path,
        "here": here(request),
        "notice": request.query_params.get("notice"),
        "refresh": 0,
    }
    return templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def here(request: Request) -> str:
    """The path and query of a request, to come back to after a form."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def back(target: str | None, notice: str, default: str = "/") -> Response:
    """303 to ``target`` (a path of this console, else ``default``) with ``notice`` shown."""
    local = target and target.startswith("/") and not target.startswith("//")
    path, _, query = (target if local and target else default).partition("?")
    fields = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "notice"]
    fields.append(("notice", notice))
    return RedirectResponse(f"{path}?{urlencode(fields)}", status_code=303)
