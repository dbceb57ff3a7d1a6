"""What the console changes (POST only): logging in and out, retrying parked events,
replaying dead letters, starting a replay of a source. Every change needs the session's CSRF
token (form field ``csrf``), leaves one audit line (who, what, scope, how many) and answers
303 back to the page it came from with a notice (post/redirect/get)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from consumers import mend
from consumers.replay import Window
from contract.topics import STREAMS
from ingester.console.auth import COOKIE, FormError, read_form
from ingester.console.context import audit, audit_log, back, console, operator, render
from ingester.console.pages import dlq_filter
from ingester.replay import parse_time

log = logging.getLogger("ingester.console")

MATCHING_LIMIT = 500  # dead letters one "replay all matching" click re-publishes at most
LOGIN_REFUSED_PAUSE_S = 1.0  # slows down guessing the token


Form = dict[str, str]


async def _form(request: Request) -> Form | Response:
    """The form of a change, or the page refusing it (400 malformed, 403 bad CSRF token)."""
    try:
        fields = await read_form(request)
    except FormError as exc:
        return render(request, "error.html", {"message": str(exc)}, status_code=400)
    sessions = console(request).sessions
    if not sessions.csrf_ok(operator(request).session, fields.get("csrf", "")):
        message = "this form has expired or did not come from the console; reload the page"
        return render(request, "error.html", {"message": message}, status_code=403)
    return fields


def change(
    handler: Callable[[Request, Form], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that runs ``handler`` with the request's form, once its CSRF token holds."""

    async def endpoint(request: Request) -> Response:
        fields = await _form(request)
        if isinstance(fields, Response):
            return fields
        return await handler(request, fields)

    return endpoint


async def login(request: Request) -> Response:
    try:
        fields = await read_form(request)
    except FormError as exc:
        return render(request, "error.html", {"message": str(exc)}, status_code=400)
    sessions = console(request).sessions
    address = request.client.host if request.client else "?"
    target = fields.get("next") or "/"
    if not sessions.token_ok(fields.get("token", "")):
        audit_log.warning("console login refused", extra={"who": address})
        await asyncio.sleep(LOGIN_REFUSED_PAUSE_S)
        context = {"next": target, "error": "wrong token"}
        return render(request, "login.html", context, status_code=401)
    cookie = sessions.issue(fields.get("name", ""))
    name, _ = sessions.open(cookie) or ("?", "")
    audit_log.info(
        "console action", extra={"who": f"{name} ({address})", "what": "login", "scope": "-"}
    )
    local = target.startswith("/") and not target.startswith("//")
    response = RedirectResponse(target if local else "/", status_code=303)
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/")
    return response


@change
async def logout(request: Request, fields: Form) -> Response:
    audit(request, "logout", "-", 0)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@change
async def retry_parked(request: Request, fields: Form) -> Response:
    state = console(request)
    what = fields.get("scope", "")
    args = (state.settings, state.pool, state.producer)
    if what == "event":
        scope = f"{fields.get('source', '')}/{fields.get('event_id', '')}"
        report = await mend.retry_event(*args, fields.get("source", ""), fields.get("event_id", ""))
    elif what == "reason":
        scope = f"reason={fields.get('reason', '')}"
        report = await mend.retry_reason(*args, fields.get("reason", ""))
    elif what == "all":
        scope = "all"
        report = await mend.retry_all(*args)
    else:
        return render(request, "error.html", {"message": "nothing to retry"}, status_code=400)
    totals = report.totals()
    retried = sum(totals.values())
    audit(request, "retry parked", scope, retried)
    notice = (
        f"retried {retried}: applied {totals['applied']}, skipped {totals['skipped']},"
        f" still parked {totals['pending']}, dead-lettered {totals['dead']}"
        + ("; more are left (retry again)" if report.more else "")
    )
    return back(fields.get("back"), notice, "/parked")


@change
async def replay_dead_letter(request: Request, fields: Form) -> Response:
    state = console(request)
    partition, _, offset = fields.get("position", "").partition(":")
    if not (partition.isdigit() and offset.isdigit()):
        return render(request, "error.html", {"message": "no such dead letter"}, status_code=400)
    try:
        outcome = await mend.replay_one(state.settings, state.producer, int(partition), int(offset))
    except LookupError as exc:  # gone with the topic's retention, or never there
        return back(fields.get("back"), str(exc), "/dead-letters")
    audit(
        request, "replay dead letter", f"dlq {outcome.position}", 0 if outcome.plan is None else 1
    )
    if outcome.plan is None:
        notice = f"refused {outcome.position}: {outcome.refusal}"
    else:
        notice = f"replayed {outcome.position} ({outcome.event_id}) to {outcome.plan.topic}"
    return back(fields.get("back"), notice, "/dead-letters")


@change
async def replay_matching(request: Request, fields: Form) -> Response:
    state = console(request)
    match = dlq_filter(fields)
    done = await mend.replay_matching(
        state.settings, state.pool, state.producer, match, MATCHING_LIMIT
    )
    scope = f"error={match.error!r} topic={match.topic!r} text={match.text!r}"
    audit(request, "replay dead letters", scope, len(done.replayed))
    notice = (
        f"replayed {len(done.replayed)} dead letter(s), refused {done.refused},"
        f" passed over {done.applied_since} applied since (read {done.read})"
    )
    return back(fields.get("back"), notice, "/dead-letters")


@change
async def start_replay(request: Request, fields: Form) -> Response:
    state = console(request)
    stream = fields.get("source", "")
    try:
        since = parse_time(fields.get("since", ""))
        until = parse_time(fields["until"]) if fields.get("until", "").strip() else None
    except argparse.ArgumentTypeError as exc:
        return back("/replay", str(exc))
    if stream not in STREAMS or (until is not None and until <= since):
        return back("/replay", "choose a source, and an end after the start")
    run = state.replays.start(Window(stream, since, until), operator(request).who)
    if run is None:
        return back("/replay", "a replay is running already")
    audit(request, "replay", run.window.name, 0)
    return back("/replay", f"replay of {run.window.name} started")
