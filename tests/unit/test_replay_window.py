"""The pure parts of ``ingester replay``: the times it takes, the window a record falls in,
which offsets-for-times answers count, and the lines it shows."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from consumers.decode import RawRecord
from consumers.replay import ReplayProgress, Window, _offset_at
from ingester.replay import bar, parse_time, summary

SINCE = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
UNTIL = datetime(2026, 5, 1, 13, 0, tzinfo=UTC)
MS = int(SINCE.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-05-01T12:00:00Z", SINCE, id="rfc 3339 with Z"),
        pytest.param("2026-05-01T14:00:00+02:00", SINCE, id="an offset, made UTC"),
        pytest.param("2026-05-01T12:00:00", SINCE, id="no offset: UTC"),
        pytest.param("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC), id="a date: midnight UTC"),
    ],
)
def test_times(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", ""])
def test_what_is_not_a_time_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a time"):
        parse_time(text)


def record(timestamp_ms: int | None) -> RawRecord:
    return RawRecord("t", 0, 0, None, None, (), timestamp_ms)


@pytest.mark.parametrize(
    ("window", "stamp", "inside"),
    [
        pytest.param(Window("kit", SINCE), MS, True, id="at since"),
        pytest.param(Window("kit", SINCE), MS - 1, False, id="before since"),
        pytest.param(Window("kit", SINCE, UNTIL), MS + 3_600_000, False, id="at until"),
        pytest.param(Window("kit", SINCE, UNTIL), MS + 3_599_999, True, id="before until"),
        pytest.param(Window("kit", SINCE), None, True, id="no timestamp"),
    ],
)
def test_the_window_holds_records_by_their_timestamp(
    window: Window, stamp: int | None, inside: bool
) -> None:
    assert window.holds(record(stamp)) is inside


def test_a_window_is_named_by_its_source_times_and_mode() -> None:
    assert Window("kit", SINCE).name == "kit 2026-05-01T12:00:00.000Z..end"
    assert (
        Window("kit", SINCE, UNTIL, reapply=True).name
        == "kit 2026-05-01T12:00:00.000Z..2026-05-01T13:00:00.000Z reapply"
    )


@pytest.mark.parametrize(
    ("answer", "offset"),
    [
        pytest.param(SimpleNamespace(offset=42, timestamp=MS), 42, id="a record at the time"),
        pytest.param(SimpleNamespace(offset=42, timestamp=MS + 5), 42, id="a record after it"),
        pytest.param(SimpleNamespace(offset=0, timestamp=-1), 7, id="no real answer"),
        pytest.param(None, 7, id="no record at or after the time"),
    ],
)
def test_which_offsets_for_times_answers_count(answer: object, offset: int) -> None:
    assert _offset_at(answer, MS, 7) == offset


def test_the_lines_it_shows() -> None:
    progress = ReplayProgress(Window("kit", SINCE), total=200, read=50, outside=10)
    progress.count("applied", 30)
    progress.count("duplicate", 10)

    assert bar(progress, width=8) == "replay kit [##......]  25% 50/200 records"
    assert summary(progress) == (
        "replayed kit from 2026-05-01T12:00:00.000Z to the end: read 50 records (10 outside"
        " the window); applied 30, already applied 10, skipped 0, parked 0, failed 0"
    )
