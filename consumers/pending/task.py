"""The periodic retry of pending events, as a task of its own next to the runner.

A pass (:meth:`consumers.pending.retry.PendingRetry.run_pass`) holds a chunk of rows per
transaction and awaits the database between chunks, so the runner's loop keeps fetching,
applying and committing while it runs; it never happens inside a batch, and a pass is bounded
by rows and seconds (``PENDING_PASS_MAX_ROWS``, ``PENDING_PASS_MAX_S``). A pass that stopped
at its budget is followed by the next one at once; otherwise the task sleeps
``PENDING_RETRY_INTERVAL_S``. An outage only postpones a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from consumers.classify import Failure, classify
from consumers.observe import observe_pending
from consumers.pending.retry import PendingRetry, RetryReport, refresh_gauges

log = logging.getLogger("consumers.retry")

PassHook = Callable[[], Awaitable[None]]


class RetryTask:
    """Runs budgeted retry passes until ``stop`` is set."""

    def __init__(self, retry: PendingRetry, *, before_pass: PassHook | None = None) -> None:
        self.retry = retry
        self.before_pass = before_pass  # a seam for tests (e.g. a slow pass)
        self.passes = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            report = await self.run_once(stop)
            if report is not None and report.more:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry.policy.interval_s)

    async def run_once(self, stop: asyncio.Event | None = None) -> RetryReport | None:
        """One pass; None when an outage postponed it."""
        try:
            if self.before_pass is not None:
                await self.before_pass()
            report = await self.retry.run_pass(stop=stop)
            if not report.more:
                # Once the backlog is drained, not after every pass of a drain.
                await refresh_gauges(self.retry.pool)
        except Exception as exc:
            if classify(exc) is not Failure.RETRYABLE:
                log.exception("pending retry pass failed")
            else:
                log.warning("pending retry postponed", extra={"error": str(exc)})
            return None
        finally:
            self.passes += 1
        observe_pending(report)
        if report.counts or report.woken or report.expired:
            log.info(
                "pending retry",
                extra={**report.totals(), "expired": report.expired, "woken": report.woken},
            )
        return report
