from __future__ import annotations

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import _base as asyncpg_base

from consumers.classify import Failure, classify, error_class, error_message
from consumers.errors import PoisonError, RetryableError


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        pytest.param(RetryableError("down"), Failure.RETRYABLE, id="own retryable"),
        pytest.param(PoisonError("bad"), Failure.POISON, id="own poison"),
        pytest.param(asyncpg.PostgresConnectionError(), Failure.RETRYABLE, id="08 connection"),
        pytest.param(asyncpg.ConnectionDoesNotExistError(), Failure.RETRYABLE, id="08003"),
        pytest.param(asyncpg.CannotConnectNowError(), Failure.RETRYABLE, id="57P03 starting"),
        pytest.param(asyncpg.TooManyConnectionsError(), Failure.RETRYABLE, id="53300"),
        pytest.param(asyncpg.SerializationError(), Failure.RETRYABLE, id="40001"),
        pytest.param(asyncpg.DeadlockDetectedError(), Failure.RETRYABLE, id="40P01"),
        pytest.param(asyncpg.AdminShutdownError(), Failure.RETRYABLE, id="57P01 shutdown"),
        pytest.param(asyncpg.LockNotAvailableError(), Failure.RETRYABLE, id="55P03"),
        pytest.param(ConnectionRefusedError(), Failure.RETRYABLE, id="refused"),
        pytest.param(FileNotFoundError("socket"), Failure.RETRYABLE, id="unix socket gone"),
        pytest.param(TimeoutError(), Failure.RETRYABLE, id="timeout"),
        pytest.param(
            asyncpg.InterfaceError("connection is closed"), Failure.RETRYABLE, id="closed conn"
        ),
        pytest.param(
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            Failure.FATAL,
            id="interface misuse",
        ),
        pytest.param(asyncpg.DataError(), Failure.POISON, id="22 data"),
        pytest.param(asyncpg.InvalidTextRepresentationError(), Failure.POISON, id="22P02"),
        pytest.param(asyncpg.NotNullViolationError(), Failure.POISON, id="23502"),
        pytest.param(asyncpg.UniqueViolationError(), Failure.POISON, id="23505"),
        pytest.param(asyncpg.CheckViolationError(), Failure.POISON, id="23514"),
        pytest.param(asyncpg.RaiseError(), Failure.POISON, id="P0001 trigger"),
        pytest.param(asyncpg_base.DataError("invalid input"), Failure.POISON, id="client data"),
        pytest.param(asyncpg.UndefinedTableError(), Failure.FATAL, id="42P01 missing table"),
        pytest.param(asyncpg.InsufficientPrivilegeError(), Failure.FATAL, id="42501 grants"),
        pytest.param(asyncpg.InvalidPasswordError(), Failure.FATAL, id="28P01"),
        pytest.param(kafka_errors.KafkaConnectionError(), Failure.RETRYABLE, id="broker down"),
        pytest.param(kafka_errors.KafkaTimeoutError(), Failure.RETRYABLE, id="broker timeout"),
        pytest.param(kafka_errors.NotLeaderForPartitionError(), Failure.RETRYABLE, id="leader"),
        pytest.param(kafka_errors.MessageSizeTooLargeError(), Failure.FATAL, id="too large"),
        pytest.param(KeyError("profile"), Failure.FATAL, id="KeyError is a bug"),
        pytest.param(TypeError("NoneType"), Failure.FATAL, id="TypeError is a bug"),
        pytest.param(ValueError("bad"), Failure.FATAL, id="ValueError is a bug"),
        pytest.param(AttributeError("x"), Failure.FATAL, id="AttributeError is a bug"),
        pytest.param(IndexError("x"), Failure.FATAL, id="IndexError is a bug"),
        pytest.param(asyncpg.LockNotAvailableError(), Failure.RETRYABLE, id="55P03 lock_timeout"),
        pytest.param(asyncpg.QueryCanceledError(), Failure.RETRYABLE, id="57014 statement_timeout"),
        pytest.param(
            asyncpg.exceptions.IdleInTransactionSessionTimeoutError(),
            Failure.RETRYABLE,
            id="25P03 idle in transaction",
        ),
        pytest.param(
            asyncpg.exceptions.ActiveSQLTransactionError(), Failure.FATAL, id="25001 a bug"
        ),
        pytest.param(RuntimeError("bug"), Failure.FATAL, id="unknown"),
    ],
)
def test_classify(exc: BaseException, expected: Failure) -> None:
    assert classify(exc) is expected


def test_error_class_and_message() -> None:
    exc = asyncpg.NotNullViolationError("null value in column")
    assert error_class(exc) == "NotNullViolationError"
    assert error_message(exc) == "null value in column"
    assert error_message(ValueError()) == "ValueError"
    assert len(error_message(ValueError("x" * 5000), limit=100)) == 100
