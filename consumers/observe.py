"""What a batch came to, as a report for the caller and as metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from consumers import metrics
from consumers.apply import Disposition, Report
from consumers.decode import Item
from consumers.dlq import DeadLetter
from consumers.pending.retry import RetryReport
from contract.headers import CE_SOURCE

log = logging.getLogger("consumers.batch")


@dataclass(slots=True)
class BatchReport:
    size: int
    counts: dict[str, int] = field(default_factory=dict)  # disposition -> events
    dead: list[DeadLetter] = field(default_factory=list)


def observe_batch(
    items: Sequence[Item], reports: Sequence[Report], dead: Sequence[DeadLetter]
) -> BatchReport:
    """Record a processed batch: its size per source, each committed transaction's handler
    latency, and one outcome per event (applied, duplicate, skipped, pending or dead)."""
    sizes: dict[str, int] = {}
    for item in items:
        source = item.event.source if item.event else (item.raw.header(CE_SOURCE) or "?")
        sizes[source] = sizes.get(source, 0) + 1
    for source, size in sizes.items():
        metrics.BATCH_SIZE.labels(source).observe(size)
    batch = BatchReport(size=len(items), dead=list(dead))
    events: dict[tuple[str, str], int] = {}  # (source, outcome) -> events; one inc() each
    for report in reports:
        for source, seconds in report.latency_s.items():
            metrics.APPLY_LATENCY.labels(source).observe(seconds)
        for settled in report.settled:
            key = (settled.event.source, settled.disposition.value)
            events[key] = events.get(key, 0) + 1
    for (source, outcome), count in events.items():
        metrics.EVENTS.labels(source, outcome).inc(count)
        batch.counts[outcome] = batch.counts.get(outcome, 0) + count
    for letter in dead:
        metrics.EVENTS.labels(letter.source or "?", Disposition.DEAD.value).inc()
    if dead:
        batch.counts[Disposition.DEAD.value] = len(dead)
    # One line per batch at DEBUG only (metrics count them), inside the batch's span: it
    # carries the trace id of the requests the batch applied.
    if log.isEnabledFor(logging.DEBUG):
        log.debug("batch", extra={"records": batch.size, "outcomes": batch.counts})
    return batch


def observe_pending(report: RetryReport) -> None:
    """Parked events were counted as ``pending`` when parked; those a retry settles count
    once more under their final outcome."""
    for (source, outcome), events in report.counts.items():
        if outcome != Disposition.PENDING.value:
            metrics.EVENTS.labels(source, outcome).inc(events)
