"""W3C Trace Context ``traceparent`` values (docs/contract.md §5), as records carry them.

Ingest writes the trace of the request that published a record (the caller's, or one it
started) in two headers with the same value: ``ce_traceparent``, the CloudEvents
distributed-tracing extension attribute in Kafka binary mode (a CloudEvents SDK reads it as
the attribute ``traceparent``), and ``traceparent``, the W3C header OpenTelemetry's Kafka
instrumentations read. Consumers continue that trace. Pure: no OpenTelemetry here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# version 00; a later version is read by its first four fields, as W3C asks of parsers.
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?"
)
SAMPLED = 0x01


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: int
    span_id: int
    flags: int

    def __str__(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"

    @property
    def trace_hex(self) -> str:
        return f"{self.trace_id:032x}"


def parse(value: str | None) -> TraceParent | None:
    """The trace context of a ``traceparent`` value; None when absent or invalid."""
    if not value:
        return None
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None or found["version"] == "ff":
        return None
    if found["version"] == "00" and found["rest"] is not None:
        return None
    trace_id, span_id = int(found["trace"], 16), int(found["span"], 16)
    if not trace_id or not span_id:
        return None
    return TraceParent(trace_id, span_id, int(found["flags"], 16))


def start() -> TraceParent:
    """A new trace: random ids (as OpenTelemetry's generator makes them), sampled."""
    return TraceParent(
        int.from_bytes(os.urandom(16), "big") or 1, int.from_bytes(os.urandom(8), "big") or 1,
        SAMPLED,
    )  # fmt: skip
