"""The console's ASGI app: its routes, the token gate, the security headers, and the clients
its lifespan opens (a database pool that connects on first use, a producer started by the
first replay or dead letter, the sampler) and closes; and ``ingester console``, which serves
it under uvicorn on a socket bound first (a taken port is one clear line).

A database or broker that fails a page answers 503 with the reason, never 500.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consumers import db
from consumers.errors import ConsumerError
from core.errors import CommandError
from core.kafka import StartOnSend, make_producer
from core.logs import configure
from core.settings import Settings
from ingest.serve import Server
from ingester.console import actions, pages
from ingester.console.auth import Sessions, TokenGate
from ingester.console.context import Console, render
from ingester.console.experiments import experiment_report, experiments
from ingester.console.replays import Replays
from ingester.console.sampler import SAMPLE_S, UNAVAILABLE, Sampler
from ingester.services import listen


class SecurityHeaders:
    """A nonce for each response's inline script, and headers that keep the pages from being
    framed, cached, sniffed or loading anything from elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(12)
        scope.setdefault("state", {})["nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = (
                    f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline';"
                    " img-src 'self' data:; form-action 'self'; frame-ancestors 'none';"
                    " base-uri 'none'"
                )
                headers["x-frame-options"] = "DENY"
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "no-referrer"
                headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def unavailable(request: Request, exc: Exception) -> Response:
    message = f"the database or the broker is unavailable: {type(exc).__name__}: {exc}"
    return render(request, "error.html", {"message": message}, status_code=503)


ROUTES = [
    Route("/", pages.overview),
    Route("/parked", pages.parked),
    Route("/parked/retry", actions.retry_parked, methods=["POST"]),
    Route("/dead-letters", pages.dead_letters),
    Route("/dead-letters/replay", actions.replay_dead_letter, methods=["POST"]),
    Route("/dead-letters/replay-matching", actions.replay_matching, methods=["POST"]),
    Route("/lookup", pages.event_lookup),
    Route("/experiments", experiments),
    Route("/experiments/{name}", experiment_report),
    Route("/replay", pages.replay_page),
    Route("/replay", actions.start_replay, methods=["POST"]),
    Route("/login", pages.login_page),
    Route("/login", actions.login, methods=["POST"]),
    Route("/logout", actions.logout, methods=["POST"]),
    Route("/healthz", pages.healthz),
    Route("/readyz", pages.readyz),
]


def create_app(settings: Settings, token: str, *, sample_s: float = SAMPLE_S) -> Starlette:
    """The console for ``settings``, let in with ``token`` (``CONSOLE_TOKEN``), sampling the
    pipeline every ``sample_s`` seconds."""
    sessions = Sessions(token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = await db.create_pool(settings, min_size=0)
        producer = StartOnSend(lambda: make_producer(settings))
        sampler = Sampler(settings, pool, sample_s)
        replays = Replays(settings, pool)
        app.state.console = Console(settings, sessions, pool, producer, sampler, replays)
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop), name="console-sampler")
        try:
            yield
        finally:
            stop.set()
            await replays.close()
            await sampling
            await producer.stop()
            await pool.close()

    handlers = {exc: unavailable for exc in (*UNAVAILABLE, ConsumerError)}
    return Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TokenGate, sessions=sessions, refuse=pages.refused),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


def serve_console(settings: Settings) -> int:
    """Serve the console until SIGTERM/SIGINT; refuses to start without ``CONSOLE_TOKEN``."""
    if not settings.console_token:
        raise CommandError("CONSOLE_TOKEN is not set: the console refuses to start without it")
    settings.require_database_url()
    settings.require_kafka()
    sock = listen(settings.console_port, settings.console_host)
    configure(settings.log_level)
    server = Server(
        uvicorn.Config(
            create_app(settings, settings.console_token),
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    asyncio.run(server.serve(sockets=[sock]))
    return 0
