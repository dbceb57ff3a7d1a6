"""The poison-flood guard: too many dead letters lately means a broken deployment, not bad data.

A batch's verdict is checked before its dead letters are published, against a rolling window
of the most recent records (about ``window_records`` of them, none older than
``window_s``): when the window, this batch included, holds at least ``min_dead`` dead letters
and they are more than ``max_share`` of its records, the batch is a flood (the numbers are
the :class:`~consumers.policies.FloodPolicy`). A window rather
than a batch, so that at low traffic (batches of one or two records) a regression that kills
every record is still seen after a few of them, and one unlucky batch in heavy traffic is not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from consumers.errors import ConsumerError
from consumers.policies import FloodPolicy


class PoisonFlood(ConsumerError):
    """Too much of the recent traffic is poison: more likely a broken deployment than bad data."""

    def __init__(self, dead: int, size: int, share: float) -> None:
        super().__init__(
            f"{dead} of the last {size} records are poison (more than {share:.0%}); "
            "holding instead of dead-lettering them"
        )
        self.dead = dead
        self.size = size


@dataclass(frozen=True, slots=True)
class _Entry:
    at: float
    records: int
    dead: int


class FloodGuard:
    def __init__(self, policy: FloodPolicy) -> None:
        self.max_share = policy.max_share
        self.min_dead = policy.min_dead
        self.window_records = policy.window_records
        self.window_s = policy.window_s
        self._entries: deque[_Entry] = deque()
        self._records = 0
        self._dead = 0

    def check(self, now: float, records: int, dead: int) -> None:
        """Raise :class:`PoisonFlood` if a batch of ``records`` with ``dead`` dead letters,
        seen at ``now`` (monotonic seconds), makes the window a flood; otherwise count it.
        The window is this batch plus earlier batches, newest first, until it holds at least
        ``window_records`` records (whole batches: which records of a batch died is not
        kept)."""
        self._expire(now)
        total_records, total_dead = records, dead
        for entry in reversed(self._entries):
            if total_records >= self.window_records:
                break
            total_records += entry.records
            total_dead += entry.dead
        if total_dead >= self.min_dead and total_dead > self.max_share * total_records:
            raise PoisonFlood(total_dead, total_records, self.max_share)
        self._entries.append(_Entry(now, records, dead))
        self._records += records
        self._dead += dead
        while self._entries and self._records - self._entries[0].records >= self.window_records:
            self._drop()

    def _expire(self, now: float) -> None:
        while self._entries and now - self._entries[0].at > self.window_s:
            self._drop()

    def _drop(self) -> None:
        old = self._entries.popleft()
        self._records -= old.records
        self._dead -= old.dead
