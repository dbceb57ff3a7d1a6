"""The ingest HTTP service: verify, cut into records, publish, and only then answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from core.settings import Settings
from core.version import version
from ingest import openapi
from ingest.exchange import json_response
from ingest.handler import Runtime, WebhookHandler
from ingest.metrics import CONTENT_TYPE_LATEST, IngestMetrics
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import ENDPOINTS


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    # Routing's own headers, e.g. the Allow of a 405 (RFC 9110 15.5.6).
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    if "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0":
        headers["Connection"] = "close"  # a body nobody will read, as in WebhookHandler
    return json_response(status, {"error": code, "detail": str(detail).lower()}, **headers)


class IngestApp(Starlette):
    """Starlette, with a POST to a webhook route without path parameters handed straight to
    its handler: no middleware stack or routing walk for the requests that are most of the
    traffic. Everything else (other methods, paths, token routes) goes through Starlette."""

    def __init__(self, direct: dict[str, WebhookHandler], **options: Any) -> None:
        super().__init__(**options)
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self.direct.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    publisher: Publisher | None = None,
    *,
    metrics: IngestMetrics | None = None,
) -> Starlette:
    """The ingest app. With ``publisher`` given, the caller owns it (started and closed
    outside); otherwise the lifespan connects a :class:`KafkaPublisher` in the background
    (``/readyz`` is 503 until it is up) and flushes and closes it on shutdown."""
    runtime = Runtime(settings, metrics or IngestMetrics.create(), publisher)
    runtime.metrics.watch_budget(
        lambda: p.budget if isinstance(p := runtime.publisher, KafkaPublisher) else None
    )
    spec = orjson.dumps(openapi.document(ENDPOINTS, version()))

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        ready = runtime.publisher is not None and await runtime.publisher.ready()
        runtime.metrics.producer_ready.set(1 if ready else 0)
        if ready:
            return json_response(200, {"status": "ready"})
        return json_response(
            503, {"error": "not_ready", "detail": "the Kafka producer is not connected"}
        )

    async def metrics_endpoint(request: Request) -> Response:
        return Response(runtime.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(request: Request) -> Response:
        return Response(spec, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if publisher is not None:
            yield
            return
        owned = KafkaPublisher(settings)
        runtime.publisher = owned
        connecting = asyncio.create_task(owned.connect(), name="kafka-connect")
        connecting.add_done_callback(
            lambda task: runtime.metrics.producer_ready.set(
                0 if task.cancelled() or task.exception() else 1
            )
        )
        try:
            yield
        finally:
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
            runtime.publisher = None
            await owned.close(settings.producer_flush_timeout_s)
            runtime.metrics.producer_ready.set(0)

    handlers = [WebhookHandler(e, runtime) for e in ENDPOINTS]
    routes = [Route(h.endpoint.path, h, methods=["POST"], name=h.endpoint.name) for h in handlers]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = IngestApp(
        {h.endpoint.path: h for h in handlers if "{" not in h.endpoint.path},
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.runtime = runtime
    return app
