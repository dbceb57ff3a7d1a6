"""The stop discipline of every loop that reads the topics (the runner, rc-sync): steps until
asked to stop, and a step in flight then gets a deadline to finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("consumers.steps")


async def until_stopped(
    step: Callable[[], Awaitable[object]], stop: asyncio.Event, shutdown_s: float
) -> None:
    """Run ``step`` again and again until ``stop`` is set. A step in flight when it is set
    gets ``shutdown_s`` to finish (committing its batch); past that deadline it is abandoned
    uncommitted, and its batch will be redelivered. A step's failure propagates."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            current = asyncio.ensure_future(step())
            await asyncio.wait({current, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not current.done():
                try:
                    await asyncio.wait_for(current, shutdown_s)
                except TimeoutError:
                    log.warning(
                        "batch abandoned at shutdown; it will be redelivered",
                        extra={"deadline_s": shutdown_s},
                    )
                    return
            current.result()
    finally:
        stopping.cancel()
