"""Liveness of the consumer loop: /healthz fails when the loop stopped making progress while
work is waiting.

The loop beats whenever it gets somewhere: a batch committed, an empty fetch, an outage
retry attempt (each bounded by a timeout), each transaction of a bisection, a poll while it
holds after a poison flood. A loop that is merely idle (nothing to fetch) keeps beating; a
loop stuck on an await that no timeout bounds stops beating, and once ``stall_s`` have passed
with a batch in hand or lag on its partitions, the process is not live and Kubernetes
restarts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock  # replaceable (tests feed it by hand)
        self._beat = clock()
        self.batch_in_hand = False
        self.lag = 0

    def beat(self) -> None:
        self._beat = self.clock()

    @property
    def waiting(self) -> bool:
        """Work is waiting: a batch is in hand or the partitions have records not committed."""
        return self.batch_in_hand or self.lag > 0

    def since_beat(self) -> float:
        return self.clock() - self._beat

    def stalled(self) -> bool:
        return self.stall_s > 0 and self.waiting and self.since_beat() > self.stall_s
