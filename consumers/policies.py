"""The small policies a :class:`~consumers.runner.Runner` takes instead of the whole settings
(as arroyo's ``StreamProcessor`` takes a commit policy and a DLQ policy). Each names the
settings it comes from; :func:`consumers.service.build_runner` reads them, once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """A bounded batch."""

    max_records: int  # CONSUMER_BATCH_MAX
    wait_ms: int  # CONSUMER_BATCH_WAIT_MS: how long a fetch waits for the first record


@dataclass(frozen=True, slots=True)
class ApplyPolicy:
    """How a batch's events are applied."""

    environment: str  # ENVIRONMENT: the deployment the handlers apply for
    concurrency: int  # CONSUMER_APPLY_CONCURRENCY: transactions at once (one per source)
    transaction_timeout_s: float  # DB_TRANSACTION_TIMEOUT_S: then cut, retried as an outage
    backoff_max_s: float  # PENDING_BACKOFF_MAX_S: cap of a re-parked event's backoff


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the loop waits on the broker, at shutdown, and before it counts as stalled."""

    io_s: float  # KAFKA_IO_TIMEOUT_S: a fetch (beyond its wait), an offset commit, lag
    shutdown_s: float  # SHUTDOWN_DEADLINE_S: for the batch in flight at SIGTERM
    liveness_stall_s: float  # LIVENESS_STALL_S: no progress with work waiting (0: off)


@dataclass(frozen=True, slots=True)
class FloodPolicy:
    """When poison is a flood (a broken deployment) rather than bad records
    (:mod:`consumers.flood`)."""

    max_share: float  # POISON_MAX_SHARE
    min_dead: int  # POISON_MIN_DEAD
    window_records: int  # POISON_WINDOW_RECORDS
    window_s: float  # POISON_WINDOW_S
    min_records: int  # POISON_MIN_RECORDS
