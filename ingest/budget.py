"""A first-come, first-served byte budget for the records buffered towards Kafka.

The publisher admits a request's records only while the bytes handed to Kafka and not yet
acknowledged stay under ``PRODUCE_BUFFER_BYTES``; beyond it requests wait in arrival order
(no request overtakes an earlier one, so waits are fair) until acknowledgements free room,
or until their own deadline, when they answer 503. A request larger than the whole budget
is admitted alone when nothing else is buffered, so it is never refused for its size only.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ByteBudget"]


class ByteBudget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, size: int) -> bool:
        return self.used == 0 or self.used + size <= self.limit

    def try_acquire(self, size: int) -> bool:
        """Take room for ``size`` bytes if that needs no wait (nobody queued, room left)."""
        if not self._waiters and self._fits(size):
            self.used += size
            return True
        return False

    async def acquire(self, size: int) -> None:
        """Wait for room for ``size`` bytes; cancelling the wait (a deadline) takes nothing."""
        if self.try_acquire(size):
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # admitted just as the wait was cancelled: give it back
            else:
                self._waiters.remove(entry)
                self._wake()  # the head may have been this entry
            raise

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, waiter = self._waiters.popleft()
            self.used += size
            waiter.set_result(None)
