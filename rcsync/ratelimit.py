"""The client-side rate limit: at most ``RC_SYNC_MAX_RPS`` calls a second, evenly spaced, and
nothing at all while RevenueCat asked us to wait (429 ``Retry-After``).

A token bucket holding one token: a call takes it, and it comes back ``1 / rate`` seconds
after that call started. So calls are at least ``1 / rate`` apart whatever the concurrency,
and any one-second window holds at most ``rate + 1`` of them. Waiters are served one at a
time, first come first served; a wait that ends inside a hold (a 429 that arrived
meanwhile) waits again. RevenueCat's limit is per project, so a 429 holds every call, not
only the one that got it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

CLIENT = "client"  # our own pace
RETRY_AFTER = "retry_after"  # RevenueCat's 429

Waited = Callable[[str, float], None]


def _nothing(reason: str, seconds: float) -> None:
    return None


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Waited = _nothing,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._on_wait = on_wait
        self._next = clock()  # when the token is back
        self._held_until = float("-inf")
        self._turn = asyncio.Lock()

    def hold(self, seconds: float) -> None:
        """No call starts before ``seconds`` from now (a 429's ``Retry-After``)."""
        self._held_until = max(self._held_until, self._clock() + seconds)

    def wait_needed(self, now: float) -> tuple[float, str]:
        """How long a call arriving at ``now`` must wait, and why (0 when it may start)."""
        if self._held_until > now and self._held_until >= self._next:
            return self._held_until - now, RETRY_AFTER
        return max(0.0, self._next - now), CLIENT

    async def take(self) -> float:
        """Wait for the turn to call; returns the seconds waited."""
        waited = 0.0
        async with self._turn:
            while True:
                now = self._clock()
                wait, reason = self.wait_needed(now)
                if wait <= 0:
                    self._next = now + self.interval
                    return waited
                self._on_wait(reason, wait)
                await self._sleep(wait)
                waited += wait
