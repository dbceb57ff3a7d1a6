"""The ingest HTTP service: verify, cut into records, publish, and only then answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from contract.records import Record, rfc3339
from core.settings import Settings
from core.topics import topic_name
from ingest import openapi
from ingest.body import declared_length, read_limited
from ingest.endpoint import Endpoint, Head, Incoming
from ingest.errors import IngestError, NotConfigured, PublishError, VerificationError
from ingest.limits import Admission
from ingest.metrics import CONTENT_TYPE_LATEST, IngestMetrics
from ingest.publisher import KafkaPublisher, Publisher
from ingest.registry import ENDPOINTS

log = logging.getLogger("ingest.http")

RETRY_AFTER_S = 5
OFFLOAD_BYTES = 256 * 1024
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def json_response(status: int, payload: Mapping[str, Any], **headers: str) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def error_response(error: IngestError) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if error.status == 503 else {}
    return json_response(error.status, {"error": error.code, "detail": error.detail}, **headers)


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one."""
    given = headers.get("x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


class Runtime:
    """What the handlers share; the publisher is set by the lifespan unless injected."""

    def __init__(self, settings: Settings, metrics: IngestMetrics, publisher: Publisher | None):
        self.settings = settings
        self.metrics = metrics
        self.publisher = publisher
        self.admission = Admission(settings.max_concurrent_requests, settings.max_inflight_bytes)

    def count_produced(self, records: Sequence[Record]) -> None:
        for stream, count in Counter(r.stream for r in records).items():
            topic = topic_name(self.settings.topic_prefix, stream)
            self.metrics.records_produced.labels(topic).inc(count)


class WebhookHandler:
    """The one request path every provider shares: raw body -> accept -> publish -> answer."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime) -> None:
        self.endpoint = endpoint
        self.runtime = runtime

    async def _process(self, request: Request, now: float) -> list[Record]:
        """The checks in their order (README, "Limits and the order of checks"): what needs
        no body first, so a refused request costs neither its upload nor memory."""
        settings = self.runtime.settings
        endpoint = self.endpoint
        if not endpoint.enabled(settings):
            raise NotConfigured("not found")
        endpoint.authorize(settings, Head(request.headers, request.path_params, now))
        declared = declared_length(request.headers, settings.max_body_bytes)
        with self.runtime.admission.enter(declared) as ticket:
            raw = await read_limited(
                request, settings.max_body_bytes, ticket, settings.body_timeout_s
            )
            request.state.body_read = True
            received_at = rfc3339(datetime.fromtimestamp(now, UTC))
            incoming = Incoming(request.headers, request.path_params, raw, now, received_at)
            if len(raw) > OFFLOAD_BYTES:
                # Decoding and validating a multi-megabyte batch takes milliseconds; off the
                # event loop, concurrent small requests are not held up behind it.
                records = await asyncio.to_thread(endpoint.accept, settings, incoming)
            else:
                records = endpoint.accept(settings, incoming)
            if records:
                await self._publish(records)
        return records

    async def _publish(self, records: list[Record]) -> None:
        runtime = self.runtime
        if runtime.publisher is None:
            raise PublishError("the Kafka producer is not running")
        started = time.perf_counter()
        try:
            await runtime.publisher.publish(records)
        except PublishError:
            runtime.metrics.producer_ready.set(0)
            raise
        runtime.metrics.produce_latency.labels(self.endpoint.name).observe(
            time.perf_counter() - started
        )
        runtime.metrics.producer_ready.set(1)
        runtime.count_produced(records)

    async def handle(self, request: Request) -> Response:
        now = time.time()
        started = time.perf_counter()
        rid = request_id(request.headers)
        name = self.endpoint.name
        records: list[Record] = []
        failure: str | None = None
        try:
            records = await self._process(request, now)
            response = json_response(
                self.endpoint.success_status, {"status": "accepted", "records": len(records)}
            )
        except VerificationError as exc:
            failure = exc.reason
            self.runtime.metrics.signature_failures.labels(name, exc.reason).inc()
            response = error_response(exc)
        except IngestError as exc:
            failure = exc.code
            response = error_response(exc)
        except ClientDisconnect:
            # Gone before the body arrived: nothing was published, nobody reads the answer.
            failure = "client_disconnected"
            response = json_response(400, {"error": "bad_request", "detail": "disconnected"})
        except Exception:
            failure = "internal"
            log.exception("unexpected error", extra={"request_id": rid, "endpoint": name})
            response = json_response(500, {"error": "internal", "detail": "internal error"})
        if not getattr(request.state, "body_read", False):
            # Answered before the body was read: what is left of it is not worth reading,
            # nor a connection that may still be trickling it.
            response.headers["Connection"] = "close"
        elapsed = time.perf_counter() - started
        metrics = self.runtime.metrics
        metrics.requests.labels(name, str(response.status_code)).inc()
        metrics.request_duration.labels(name).observe(elapsed)
        response.headers[REQUEST_ID_HEADER] = rid
        # Successes are counted by ingest_requests_total and logged at DEBUG only: a JSON
        # line per accepted request cost a sixth of the CPU (docs/benchmarks.md). Refusals
        # stay at INFO and failures at WARNING. The route template, not the URL, is logged:
        # token paths must not reach the logs.
        status = response.status_code
        if status >= 500:
            level = logging.WARNING
        else:
            level = logging.INFO if status >= 300 else logging.DEBUG
        if not log.isEnabledFor(level):
            return response
        log.log(
            level,
            "request",
            extra={
                "request_id": rid,
                "endpoint": name,
                "route": self.endpoint.path,
                "status": status,
                "records": len(records),
                "reason": failure,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return response


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    # Routing's own headers, e.g. the Allow of a 405 (RFC 9110 15.5.6).
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    if "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0":
        headers["Connection"] = "close"  # a body nobody will read, as in WebhookHandler
    return json_response(status, {"error": code, "detail": str(detail).lower()}, **headers)


def _version() -> str:
    try:
        return metadata.version("webhook-ingester")
    except metadata.PackageNotFoundError:
        return "0"


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
    spec = orjson.dumps(openapi.document(ENDPOINTS, _version()))

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

    routes = [
        Route(e.path, WebhookHandler(e, runtime).handle, methods=["POST"], name=e.name)
        for e in ENDPOINTS
    ]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.runtime = runtime
    return app
