"""The ingest HTTP service: verify, cut into records, publish, and only then answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import orjson
from prometheus_client.metrics import Counter as CounterChild
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from contract.records import Record
from core.settings import Settings
from core.topics import topic_name
from ingest import openapi
from ingest.body import declared_length, read_limited
from ingest.clock import received_at
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


def request_id(headers: Mapping[str, str]) -> str:
    """The caller's X-Request-Id when it is a sane token, else a fresh one."""
    given = headers.get("x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID


def header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as a plain dict with lower-case names (ASGI servers lower-case
    them); of a repeated header the first value wins, as in Starlette's ``Headers``."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


_JSON = (b"content-type", b"application/json")
_CLOSE = (b"connection", b"close")
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()
_RETRY_AFTER = (b"retry-after", str(RETRY_AFTER_S).encode())


class Answer:
    """A JSON answer as ASGI messages, without a Starlette ``Response``: the webhook routes
    answer thousands of times a second and need nothing else of it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, *extra: tuple[bytes, bytes]) -> None:
        self.status = status
        self.body = body
        self.headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]

    @classmethod
    def error(cls, error: IngestError) -> Answer:
        body = orjson.dumps({"error": error.code, "detail": error.detail})
        return (
            cls(error.status, body, _RETRY_AFTER)
            if error.status == 503
            else cls(error.status, body)
        )

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


class Progress:
    """How far one request got: a refusal before its body was read closes the connection."""

    __slots__ = ("body_read",)

    def __init__(self) -> None:
        self.body_read = False


class Runtime:
    """What the handlers share; the publisher is set by the lifespan unless injected."""

    def __init__(self, settings: Settings, metrics: IngestMetrics, publisher: Publisher | None):
        self.settings = settings
        self.metrics = metrics
        self.publisher = publisher
        self.admission = Admission(settings.max_concurrent_requests, settings.max_inflight_bytes)
        # The labelled children, looked up once: a labels() call per request and metric
        # costs a lock and a tuple hash each.
        self._produced: dict[str, CounterChild] = {}

    def count_produced(self, records: Sequence[Record]) -> None:
        if len(records) == 1:
            self._produced_child(records[0].stream).inc()
            return
        for stream, count in Counter(r.stream for r in records).items():
            self._produced_child(stream).inc(count)

    def _produced_child(self, stream: str) -> CounterChild:
        child = self._produced.get(stream)
        if child is None:
            topic = topic_name(self.settings.topic_prefix, stream)
            child = self._produced[stream] = self.metrics.records_produced.labels(topic)
        return child


class WebhookHandler:
    """The one request path every provider shares: raw body -> accept -> publish -> answer.

    A plain ASGI app (Starlette routes to it without building a ``Request`` or a
    ``Response``; :class:`IngestApp` calls it directly for the fixed paths)."""

    def __init__(self, endpoint: Endpoint, runtime: Runtime) -> None:
        self.endpoint = endpoint
        self.runtime = runtime
        metrics = runtime.metrics
        self._duration = metrics.request_duration.labels(endpoint.name)
        self._produce_latency = metrics.produce_latency.labels(endpoint.name)
        self._requests: dict[int, CounterChild] = {}
        self._accepted: dict[int, bytes] = {}  # success bodies by record count

    def _count_request(self, status: int) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self.runtime.metrics.requests.labels(
                self.endpoint.name, str(status)
            )
        child.inc()

    def _success(self, records: int) -> bytes:
        body = self._accepted.get(records)
        if body is None:
            body = orjson.dumps({"status": "accepted", "records": records})
            if records <= 1000:
                self._accepted[records] = body
        return body

    async def _process(
        self,
        headers: dict[str, str],
        params: Mapping[str, str],
        receive: Receive,
        now: float,
        progress: Progress,
    ) -> list[Record]:
        """The checks in their order (README, "Limits and the order of checks"): what needs
        no body first, so a refused request costs neither its upload nor memory."""
        settings = self.runtime.settings
        endpoint = self.endpoint
        if not endpoint.enabled(settings):
            raise NotConfigured("not found")
        endpoint.authorize(settings, Head(headers, params, now))
        declared = declared_length(headers, settings.max_body_bytes)
        with self.runtime.admission.enter(declared) as ticket:
            raw = await read_limited(
                receive, settings.max_body_bytes, ticket, settings.body_timeout_s
            )
            progress.body_read = True
            incoming = Incoming(headers, params, raw, now, received_at(now))
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
        self._produce_latency.observe(time.perf_counter() - started)
        runtime.metrics.producer_ready.set(1)
        runtime.count_produced(records)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.handle(scope, receive)
        await answer.send(send)

    async def handle(self, scope: Scope, receive: Receive) -> Answer:
        now = time.time()
        started = time.perf_counter()
        headers = header_dict(scope["headers"])
        rid = request_id(headers)
        name = self.endpoint.name
        records: list[Record] = []
        failure: str | None = None
        progress = Progress()
        try:
            params = scope.get("path_params", {})
            records = await self._process(headers, params, receive, now, progress)
            answer = Answer(self.endpoint.success_status, self._success(len(records)))
        except VerificationError as exc:
            failure = exc.reason
            self.runtime.metrics.signature_failures.labels(name, exc.reason).inc()
            answer = Answer.error(exc)
        except IngestError as exc:
            failure = exc.code
            answer = Answer.error(exc)
        except ClientDisconnect:
            # Gone before the body arrived: nothing was published, nobody reads the answer.
            failure = "client_disconnected"
            answer = Answer(400, b'{"error":"bad_request","detail":"disconnected"}')
        except Exception:
            failure = "internal"
            log.exception("unexpected error", extra={"request_id": rid, "endpoint": name})
            answer = Answer(500, b'{"error":"internal","detail":"internal error"}')
        if not progress.body_read:
            # Answered before the body was read: what is left of it is not worth reading,
            # nor a connection that may still be trickling it.
            answer.headers.append(_CLOSE)
        elapsed = time.perf_counter() - started
        status = answer.status
        self._count_request(status)
        self._duration.observe(elapsed)
        answer.headers.append((_REQUEST_ID_NAME, rid.encode("latin-1")))
        # Successes are counted by ingest_requests_total and logged at DEBUG only: a JSON
        # line per accepted request cost a sixth of the CPU (docs/benchmarks.md). Refusals
        # stay at INFO and failures at WARNING. The route template, not the URL, is logged:
        # token paths must not reach the logs.
        if status >= 500:
            level = logging.WARNING
        else:
            level = logging.INFO if status >= 300 else logging.DEBUG
        if not log.isEnabledFor(level):
            return answer
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
        return answer


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
