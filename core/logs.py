"""Structured logs: one JSON object a line, never a secret, never a full email address.

A line written inside a trace (a consumer's batch, a request under OpenTelemetry) carries
its ``trace_id`` and ``span_id``, so on-call can go from a log line to the trace and back.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # The trace of the work that logs (a consumer batch, a traced request): set by the
        # caller in `extra`, else read from the current span.
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            payload["trace_id"] = f"{context.trace_id:032x}"
            payload["span_id"] = f"{context.span_id:016x}"
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class Repeats(logging.Filter):
    """Lets one record through per (logger, message template) every ``window_s`` seconds for
    the loggers under ``prefix``; the next one let through says how many were dropped
    (``suppressed_repeats``). aiokafka logs every failed reconnect attempt, a line per
    attempt while a broker is away; this keeps one a window."""

    def __init__(self, prefix: str = "aiokafka", window_s: float = 30.0) -> None:
        super().__init__()
        self.prefix = prefix
        self.window_s = window_s
        self._last: dict[tuple[str, object], float] = {}
        self._dropped: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, record.msg)
        last = self._last.get(key)
        if last is not None and record.created - last < self.window_s:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = record.created
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.suppressed_repeats = dropped
        return True


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka's warnings matter (a member leaving the group after max_poll_interval_ms, a
    # failed heartbeat or rebalance, a refused commit): WARNING and up reach the logs, its
    # repeated reconnect errors once per 30 s (Repeats). At DEBUG it would dump whole fetch
    # and produce requests, record values (emails, phone numbers) included, so INFO is as
    # verbose as it gets.
    logging.getLogger("aiokafka").setLevel(logging.WARNING if level != "DEBUG" else "INFO")
