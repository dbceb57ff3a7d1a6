"""Log configuration: aiokafka's warnings reach the logs, its repeated errors once a window."""

from __future__ import annotations

import logging

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from core.logs import JsonFormatter, Repeats, configure


def record(name: str, msg: str, created: float, level: int = logging.ERROR) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, ("h", 1), None)
    rec.created = created
    return rec


@pytest.mark.parametrize(
    ("records", "passed"),
    [
        pytest.param(
            [("aiokafka.client", "Unable connect to %s:%s", t) for t in (0, 1, 2, 29.9)],
            [True, False, False, False],
            id="a reconnect flood: the first only",
        ),
        pytest.param(
            [("aiokafka.client", "Unable connect to %s:%s", t) for t in (0, 5, 31)],
            [True, False, True],
            id="again after the window",
        ),
        pytest.param(
            [("aiokafka.client", "Unable connect", 0), ("aiokafka.client", "Heartbeat failed", 1)],
            [True, True],
            id="different messages",
        ),
        pytest.param(
            [("consumers.runner", "fetch failed", t) for t in (0, 1)],
            [True, True],
            id="our own loggers untouched",
        ),
    ],
)
def test_repeats(records: list[tuple[str, str, float]], passed: list[bool]) -> None:
    repeats = Repeats(window_s=30.0)
    assert [repeats.filter(record(*r)) for r in records] == passed


def test_the_next_record_through_counts_the_dropped_ones() -> None:
    repeats = Repeats(window_s=30.0)
    flood = [record("aiokafka.client", "Unable connect to %s:%s", t) for t in (0, 1, 2, 40)]
    assert [repeats.filter(r) for r in flood] == [True, False, False, True]
    assert getattr(flood[3], "suppressed_repeats", None) == 2


def test_aiokafka_warnings_are_not_hidden() -> None:
    before = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        configure("INFO")
        assert logging.getLogger("aiokafka.consumer.group_coordinator").isEnabledFor(
            logging.WARNING
        )
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.INFO)
    finally:
        logging.getLogger().handlers[:], level = before
        logging.getLogger().setLevel(level)
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)


def test_a_line_inside_a_span_carries_its_trace_id() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("consumers.batch", logging.INFO, "", 0, "batch", (), None)
    with tracer.start_as_current_span("batch") as span:
        inside = orjson.loads(JsonFormatter().format(record))
    outside = orjson.loads(JsonFormatter().format(record))

    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in outside
