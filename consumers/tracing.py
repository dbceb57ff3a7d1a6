"""A span per batch, continuing the traces of the records in it (docs/contract.md §5).

Each record carries the trace of the request that published it (``traceparent``). The batch
is one span of kind CONSUMER, linked to each distinct context of its records (OpenTelemetry's
messaging conventions for a batch); when every record of the batch belongs to one trace -- a request
and the batch that applies it -- the span is that trace's child, so one trace runs from the
door to the rows. Everything the batch does runs inside the span: log lines carry its
``trace_id`` (core.logs), and spans of instrumented libraries become its children.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, Tracer

from consumers.decode import RawRecord
from contract import tracecontext
from contract.headers import CE_TRACEPARENT, TRACEPARENT

MAX_LINKS = 128  # the SDK's default OTEL_SPAN_LINK_COUNT_LIMIT; more would be dropped


def _context(value: str | None) -> SpanContext | None:
    parent = tracecontext.parse(value)
    if parent is None:
        return None
    return SpanContext(
        parent.trace_id, parent.span_id, is_remote=True, trace_flags=TraceFlags(parent.flags)
    )


def batch_contexts(records: Sequence[RawRecord]) -> list[SpanContext]:
    """The distinct span contexts the records carry, in record order. The records of one
    request share its context (a Kit delivery is up to 100 records, an `/events` post up to
    500), so each distinct value is parsed and linked once."""
    values = dict.fromkeys(r.header(TRACEPARENT) or r.header(CE_TRACEPARENT) for r in records)
    return [c for c in map(_context, values) if c is not None]


@contextlib.contextmanager
def batch_span(tracer: Tracer, records: Sequence[RawRecord]) -> Iterator[trace.Span]:
    """The current span while a batch is processed."""
    contexts = batch_contexts(records)
    parent: Context | None = None
    if contexts and len({c.trace_id for c in contexts}) == 1:
        parent = trace.set_span_in_context(NonRecordingSpan(contexts[0]))
    topics = sorted({r.topic for r in records})
    with tracer.start_as_current_span(
        f"process {','.join(topics)}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[Link(c) for c in contexts[:MAX_LINKS]],
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.batch.message_count": len(records),
        },
    ) as span:
        yield span
