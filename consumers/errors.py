"""Failure classes of the consumer boundary: retryable (pause and retry) vs poison (dead-letter)."""

from __future__ import annotations


class ConsumerError(Exception):
    """Base of the consumer's own errors."""


class RetryableError(ConsumerError):
    """The broker or the database is unavailable; retry the same batch later, commit nothing."""


class PoisonError(ConsumerError):
    """This one record can never apply (undecodable, or fails deterministically)."""

    def __init__(self, reason: str, *, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id

    def __str__(self) -> str:
        return f"{self.reason} (event {self.event_id})" if self.event_id else self.reason
