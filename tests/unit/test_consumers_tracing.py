"""The contexts a batch's span links to: each distinct trace context of its records, once."""

from __future__ import annotations

from consumers.decode import RawRecord
from consumers.tracing import batch_contexts
from contract.headers import CE_TRACEPARENT, TRACEPARENT

A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
B = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def record(offset: int, *headers: tuple[str, str]) -> RawRecord:
    return RawRecord("t", 0, offset, None, b"{}", tuple((k, v.encode()) for k, v in headers))


def test_each_distinct_context_once_in_record_order() -> None:
    records = [
        record(0, (TRACEPARENT, B)),
        record(1, (TRACEPARENT, A)),
        record(2, (TRACEPARENT, B)),
        record(3, (CE_TRACEPARENT, A)),  # the CloudEvents header alone names the same trace
        record(4),
        record(5, (TRACEPARENT, "00-not-a-trace")),
    ]
    contexts = batch_contexts(records)
    assert [(f"{c.trace_id:032x}", f"{c.span_id:016x}") for c in contexts] == [
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"),
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
    ]
    assert [int(c.trace_flags) for c in contexts] == [0, 1]
    assert all(c.is_remote for c in contexts)


def test_no_context_without_trace_headers() -> None:
    assert batch_contexts([record(0), record(1)]) == []
