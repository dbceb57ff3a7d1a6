"""What the pending room may do, from the settings: how long parked events wait, how their
retries back off, and how much one periodic retry pass does."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings


@dataclass(frozen=True, slots=True)
class Budget:
    """Limits of one pass: rows retried and seconds spent (None: no limit), rows a chunk
    transaction holds, wake-ups consumed and rows expired per pass."""

    max_rows: int | None
    max_s: float | None
    chunk: int = 200
    wakes: int = 10_000
    expire: int = 10_000


UNBOUNDED = Budget(max_rows=None, max_s=None)


@dataclass(frozen=True, slots=True)
class PendingPolicy:
    """How long parked events wait and how much one periodic retry pass does."""

    max_age_days: float  # PENDING_MAX_AGE_DAYS: older rows expire into ingest_skipped
    backoff_max_s: float  # PENDING_BACKOFF_MAX_S: cap of a row's exponential backoff
    budget: Budget  # PENDING_PASS_MAX_ROWS, PENDING_PASS_MAX_S
    interval_s: float  # PENDING_RETRY_INTERVAL_S: pause between passes that finished

    @classmethod
    def from_settings(cls, settings: Settings) -> PendingPolicy:
        return cls(
            max_age_days=settings.pending_max_age_days,
            backoff_max_s=settings.pending_backoff_max_s,
            budget=Budget(
                max_rows=settings.pending_pass_max_rows, max_s=settings.pending_pass_max_s
            ),
            interval_s=settings.pending_retry_interval_s,
        )
