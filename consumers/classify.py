"""Which failures are worth retrying: an outage is retried, bad data is dead-lettered.

The distinction decides whether a record goes to the DLQ, so it is made by exception class
(asyncpg's SQLSTATE classes, aiokafka's error classes), never by catching ``Exception``:
- RETRYABLE: the database or the broker is unavailable, or the transaction lost a race
  (serialization failure, deadlock). Pause, back off, retry the same batch; commit nothing.
- POISON: this data can never apply: the database refused a value (22*, 23*, a trigger's
  RAISE), the record did not decode, or a handler said so with ``PoisonError``. Isolate the
  record and dead-letter it.
- FATAL: the deployment is broken (missing table, permissions) or the code is: any other
  exception from a handler (``KeyError``, ``TypeError``...) is a bug, not bad data. Retrying
  each record would only drain the topic into the DLQ, so the consumer stops instead,
  committing nothing. Handlers turn a payload of the wrong shape into ``PoisonError``
  themselves, where they know it is the payload.
"""

from __future__ import annotations

import enum

import asyncpg
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import _base as asyncpg_base

from consumers.errors import PoisonError, RetryableError


class Failure(enum.Enum):
    RETRYABLE = "retryable"
    POISON = "poison"
    FATAL = "fatal"


_RETRYABLE_POSTGRES: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08: connection gone
    asyncpg.CannotConnectNowError,  # 57P03: starting up / shutting down
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin shutdown, query cancelled
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.exceptions.LockNotAvailableError,  # 55P03
    asyncpg.exceptions.PostgresSystemError,  # 58: I/O error on the server
    asyncpg.exceptions.InternalServerError,  # XX: server crash
    # Our own bounds on the server side: statement_timeout is 57014 (class 57, above);
    # these two are class 25, which is otherwise a bug in transaction handling.
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # 25P03
    asyncpg.exceptions.TransactionTimeoutError,  # 25P04
    asyncpg.exceptions.IdleSessionTimeoutError,  # 57P05
)

_FATAL_POSTGRES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SyntaxOrAccessError,  # 42: missing table/column, permission denied
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D: database does not exist
    asyncpg.exceptions.InvalidSchemaNameError,  # 3F
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # 28: bad credentials
    asyncpg.exceptions.FeatureNotSupportedError,  # 0A
    asyncpg.exceptions.InvalidTransactionStateError,  # 25: a bug in transaction handling
)

_CLOSED_WORDS = ("closed", "closing", "connection was lost", "terminat")


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, RetryableError):
        return Failure.RETRYABLE
    if isinstance(exc, PoisonError):
        return Failure.POISON
    if isinstance(exc, asyncpg.PostgresError):
        return _classify_postgres(exc)
    if isinstance(exc, asyncpg_base.DataError):
        # Client side: a value could not be encoded for its parameter type.
        return Failure.POISON
    if isinstance(exc, asyncpg.InterfaceError):
        message = str(exc).lower()
        return Failure.RETRYABLE if any(w in message for w in _CLOSED_WORDS) else Failure.FATAL
    if isinstance(exc, asyncpg_base.OutdatedSchemaCacheError):
        return Failure.RETRYABLE  # a migration changed a type under a prepared statement
    if isinstance(exc, kafka_errors.KafkaError):
        return _classify_kafka(exc)
    if isinstance(exc, OSError):  # includes ConnectionError and TimeoutError
        return Failure.RETRYABLE
    return Failure.FATAL


def _classify_postgres(exc: asyncpg.PostgresError) -> Failure:
    if isinstance(exc, _RETRYABLE_POSTGRES):
        return Failure.RETRYABLE
    if isinstance(exc, _FATAL_POSTGRES):
        return Failure.FATAL
    # 22 data exceptions, 23 integrity violations, P0 raised by a trigger, and anything
    # else a statement reports about the rows it was given.
    return Failure.POISON


def _classify_kafka(exc: kafka_errors.KafkaError) -> Failure:
    retryable = (
        kafka_errors.KafkaConnectionError,
        kafka_errors.KafkaTimeoutError,
        kafka_errors.NodeNotReadyError,
        kafka_errors.NoBrokersAvailable,
        kafka_errors.RequestTimedOutError,
        kafka_errors.NotLeaderForPartitionError,
        kafka_errors.LeaderNotAvailableError,
        kafka_errors.CoordinatorNotAvailableError,
        kafka_errors.NotCoordinatorError,
    )
    if isinstance(exc, retryable) or getattr(exc, "retriable", False):
        return Failure.RETRYABLE
    return Failure.FATAL


def error_class(exc: BaseException) -> str:
    """The name written to the DLQ ``error class`` header, e.g. ``NotNullViolationError``."""
    return type(exc).__name__


def error_message(exc: BaseException, limit: int = 1000) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
