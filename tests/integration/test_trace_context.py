"""Trace context from the door to the rows (docs/contract.md §5, "Trace context").

A request with a ``traceparent`` yields records carrying its trace (``traceparent`` and
``ce_traceparent``), and the consumer applies them in a span of that trace whose log lines
carry its ``trace_id``; with an in-memory exporter the spans -- the request's (the ASGI
instrumentation's) and the batch's -- form one trace.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import orjson
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumers.dlq import DeadLetterSink
from consumers.registry import build_handlers, topics_for
from consumers.service import build_runner
from contract import tracecontext
from contract.topics import topic_name
from core.kafka import make_consumer, make_producer
from core.logs import JsonFormatter
from core.settings import Settings
from tests.integration import ingest_harness as h
from tests.support import read_records

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@contextmanager
def json_logs() -> Iterator[io.StringIO]:
    """Every log line of the block, as core.logs writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def post_event(settings: Settings, url: str, **headers: str) -> dict[str, Any]:
    item = h.app_event()
    request = h.events_request(settings, orjson.dumps({"events": [item]})).with_headers(**headers)
    async with httpx.AsyncClient() as client:
        response = await request.post(client, url)
    assert response.status_code == 202, response.text
    return item


async def apply_once(settings: Settings, pool: asyncpg.Pool, provider: TracerProvider) -> None:
    handlers = build_handlers(["experiments"])
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers))
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    try:
        runner = build_runner(
            settings,
            handlers,
            pool,
            consumer,
            DeadLetterSink.from_settings(settings, producer),
            tracer=provider.get_tracer("consumers"),
        )
        applied = 0
        for _ in range(200):
            report = await runner.step()
            applied += report.size if report is not None else 0
            if applied:
                break
        await runner.aclose()
        assert applied == 1
    finally:
        await consumer.stop()
        await producer.stop()


async def test_a_request_trace_runs_through_its_record_into_the_consumer(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with (
        h.kafka_publisher(settings) as publisher,
        h.serving_server(settings, publisher, tracer_provider=provider) as (url, _),
    ):
        await post_event(settings, url, traceparent=TRACEPARENT)
    [record] = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "experiments"), 1
    )
    headers = h.headers_of(record)
    carried = tracecontext.parse(headers["traceparent"])
    assert carried is not None and carried.trace_hex == TRACE_ID
    assert headers["ce_traceparent"] == headers["traceparent"]

    with json_logs() as logs:
        await apply_once(settings, pool, provider)
    lines = [orjson.loads(line) for line in logs.getvalue().splitlines()]
    batch_lines = [line for line in lines if line["logger"].startswith("consumers")]
    assert batch_lines
    assert {line["trace_id"] for line in batch_lines} == {TRACE_ID}

    spans = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    [server] = [s for s in spans if s.kind is SpanKind.SERVER]
    [batch] = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN
    assert carried.span_id == server.context.span_id  # the record names the request's span
    assert batch.parent is not None and batch.parent.span_id == server.context.span_id
    assert [link.context.span_id for link in batch.links] == [server.context.span_id]


async def test_without_a_tracer_the_caller_trace_is_passed_on_or_one_started(
    settings: Settings,
) -> None:
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        first = await post_event(settings, url, traceparent=TRACEPARENT)
        second = await post_event(settings, url)
    records = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "experiments"), 2
    )
    by_id = {h.headers_of(r)["ce_id"]: h.headers_of(r)["traceparent"] for r in records}

    assert by_id[first["id"]] == TRACEPARENT
    started = tracecontext.parse(by_id[second["id"]])
    assert started is not None and started.trace_hex != TRACE_ID
