"""Capped exponential backoff with jitter, for retrying a batch through an outage."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """``initial_s * factor**attempt``, capped at ``cap_s``, minus up to ``jitter`` of it so
    consumers that lost the database together do not return in lockstep."""

    initial_s: float = 0.25
    factor: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based); ``rand`` in [0, 1)."""
        base = min(self.cap_s, self.initial_s * self.factor ** max(0, min(attempt, 64)))
        r = random.random() if rand is None else rand
        return base * (1.0 - self.jitter * r)
