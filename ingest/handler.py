"""One webhook request, start to end: the checks in their order (README, "Limits and the
order of checks"), the records published, and only then the answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from prometheus_client.metrics import Counter as CounterChild
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from contract import tracecontext
from contract.records import Record, traced
from contract.topics import topic_name
from core.settings import Settings
from ingest.body import declared_length, read_limited
from ingest.clock import received_at
from ingest.endpoint import Endpoint, Head, Incoming
from ingest.errors import IngestError, NotConfigured, PublishError, VerificationError
from ingest.exchange import CLOSE, REQUEST_ID_NAME, Answer, header_dict, request_id, trace_parent
from ingest.limits import Admission, effective
from ingest.metrics import IngestMetrics
from ingest.publisher import Publisher

log = logging.getLogger("ingest.http")


OFFLOAD_BYTES = 256 * 1024


class RequestProgress:
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
        self.admissions: dict[str, Admission] = {}  # each endpoint's, inside the process's
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

    def __init__(self, endpoint: Endpoint[Any], runtime: Runtime) -> None:
        self.endpoint = endpoint
        self.runtime = runtime
        # The one place an endpoint's configuration is read: None answers every request 404.
        self._config = endpoint.configured(runtime.settings)
        settings = runtime.settings
        self.limits = effective(
            endpoint.limits,
            max_requests=settings.max_concurrent_requests,
            max_bytes=settings.max_inflight_bytes,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_s=settings.body_timeout_s,
        )
        self.admission = Admission(
            self.limits.max_requests, self.limits.max_bytes, within=runtime.admission
        )
        runtime.admissions[endpoint.name] = self.admission
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
        progress: RequestProgress,
        trace_context: tracecontext.TraceParent,
    ) -> list[Record]:
        """The checks in their order (README, "Limits and the order of checks"): what needs
        no body first, so a refused request costs neither its upload nor memory."""
        limits = self.limits
        endpoint, config = self.endpoint, self._config
        if config is None:
            raise NotConfigured("not found")
        endpoint.authorize(config, Head(headers, params, now))
        declared = declared_length(headers, limits.max_body_bytes)
        with self.admission.enter(declared) as ticket:
            raw = await read_limited(receive, limits.max_body_bytes, ticket, limits.body_timeout_s)
            progress.body_read = True
            incoming = Incoming(headers, params, raw, now, received_at(now))
            if len(raw) > OFFLOAD_BYTES:
                # Decoding and validating a multi-megabyte batch takes milliseconds; off the
                # event loop, concurrent small requests are not held up behind it.
                records = await asyncio.to_thread(endpoint.accept, config, incoming)
            else:
                records = endpoint.accept(config, incoming)
            if records:
                records = traced(records, str(trace_context))
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
        trace_context = trace_parent(headers)
        name = self.endpoint.name
        records: list[Record] = []
        failure: str | None = None
        progress = RequestProgress()
        try:
            params = scope.get("path_params", {})
            records = await self._process(headers, params, receive, now, progress, trace_context)
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
            answer.headers.append(CLOSE)
        elapsed = time.perf_counter() - started
        status = answer.status
        self._count_request(status)
        self._duration.observe(elapsed)
        answer.headers.append((REQUEST_ID_NAME, rid.encode("latin-1")))
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
                "trace_id": trace_context.trace_hex,
                "endpoint": name,
                "route": self.endpoint.path,
                "status": status,
                "records": len(records),
                "reason": failure,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )
        return answer
