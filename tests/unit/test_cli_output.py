"""How a verb's exception becomes the one line ``ingester VERB: ...`` and the exit code
(ingester/output.py): the one place that knows the failure classes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from consumers.errors import RetryableError
from consumers.registry import UnknownStream
from core.errors import CommandError
from core.migrate import DatabaseUnreachable, MigrationError
from core.settings import ConfigError, MissingSetting, Settings
from ingester.output import explain, fail, named
from ingester.services import consume

NO_FILE = Path("/nonexistent/.dev/stack.env")


@pytest.mark.parametrize(
    ("exc", "line", "code"),
    [
        pytest.param(CommandError("unknown experiment 'x'"), "unknown experiment 'x'", 1, id="own"),
        pytest.param(CommandError("unknown format", exit_code=2), "unknown format", 2, id="usage"),
        pytest.param(
            MissingSetting("DATABASE_URL"),
            f"DATABASE_URL is not set ({NO_FILE} does not exist;"
            " run `make dev` first or set DATABASE_URL)",
            1,
            id="missing setting names where it looked",
        ),
        pytest.param(
            ConfigError("PORT must be an integer"),
            "configuration error: PORT must be an integer",
            1,
            id="malformed setting",
        ),
        pytest.param(
            MigrationError("0002_x.sql was edited after it was applied"),
            "0002_x.sql was edited after it was applied",
            1,
            id="a sentence of its own",
        ),
        pytest.param(
            DatabaseUnreachable("cannot connect to database at h:1"),
            "cannot connect to database at h:1",
            1,
            id="unreachable database",
        ),
        pytest.param(
            ConnectionRefusedError(111, "Connect call failed"),
            "ConnectionRefusedError: [Errno 111] Connect call failed",
            1,
            id="OSError named",
        ),
        pytest.param(
            KafkaConnectionError("Unable to bootstrap from [('h', 1)]"),
            "KafkaConnectionError: Unable to bootstrap from [('h', 1)]",
            1,
            id="Kafka message already named",
        ),
        pytest.param(
            asyncpg.UndefinedTableError('relation "x" does not exist'),
            'UndefinedTableError: relation "x" does not exist',
            1,
            id="database error",
        ),
        pytest.param(
            RetryableError("broker away"), "RetryableError: broker away", 1, id="consumer"
        ),
        pytest.param(
            UnknownStream("unknown stream x"), "UnknownStream: unknown stream x", 1, id="stream"
        ),
        pytest.param(
            LookupError("topic ingest.dlq.v1 does not exist"),
            "LookupError: topic ingest.dlq.v1 does not exist",
            1,
            id="missing topic",
        ),
        pytest.param(TypeError("bad"), "unexpected TypeError: bad", 1, id="unforeseen"),
    ],
)
def test_explain(exc: Exception, line: str, code: int) -> None:
    assert explain(exc, NO_FILE) == (line, code)


def test_named_does_not_repeat_the_class_and_keeps_one_line() -> None:
    assert named(KafkaConnectionError("x")) == "KafkaConnectionError: x"
    assert named(OSError("two\n  lines")) == "OSError: two lines"


def test_fail_writes_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail("dlq list", "first\nsecond  part", 2) == 2

    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "ingester dlq list: first second part\n")


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)


async def test_consume_logs_a_known_failure_before_it_goes_up(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnknownStream):
        await consume(Settings(), ("nope",))

    (record,) = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (record["level"], record["msg"]) == ("critical", "consumer stopped")
    assert record["error"].startswith("UnknownStream: unknown stream nope")
