"""``ingester pending list|retry`` and ``ingester inbox prune``: the verbs over the
consumers' bookkeeping tables (``ingest_pending``, ``ingest_skipped``, ``ingest_inbox``,
``ingest_dead_letters``); the work is in :mod:`consumers.operations`."""

from __future__ import annotations

from datetime import datetime

from consumers.operations import pending_overview, prune, retry_pending
from core.settings import Settings


async def pending_list(settings: Settings) -> int:
    """Print parked events by reason, with the oldest of each, then the expired ones that
    ``pending retry --expired`` can replay."""
    overview = await pending_overview(settings)
    counts, expired = overview.counts, overview.expired
    if not counts:
        print("no pending events")
    else:
        print("reason\tevents\toldest_parked_at\toldest_age_s")
        for c in counts:
            print(f"{c.reason}\t{c.events}\t{c.oldest.isoformat()}\t{c.oldest_age_s:.0f}")
        print(f"{sum(c.events for c in counts)} pending event(s)")
    if expired:
        print("expired\tevents")
        for reason, events in expired:
            print(f"{reason}\t{events}")
        total = sum(n for _, n in expired)
        print(f"{total} expired event(s); `ingester pending retry --expired` replays them")
    return 0


async def pending_retry(settings: Settings, *, expired: bool = False) -> int:
    """Apply every parked event that can apply now and print the outcome; with
    ``expired``, the expired events go back to the table first."""
    retried = await retry_pending(settings, expired=expired)
    if retried.revived is not None:
        print(f"put back {retried.revived} expired event(s)")
    totals = retried.totals
    print(
        f"applied {totals['applied']}, skipped {totals['skipped']}, dead {totals['dead']}, "
        f"still pending {retried.still_pending}"
    )
    return 0


async def inbox_prune(settings: Settings, older_than_days: int) -> int:
    """Prune the inbox, skipped events and the dead-letter log; print how many of each."""
    done = await prune(settings, older_than_days)
    print(f"deleted {done.inbox} inbox rows processed before {_at(done.inbox_before)}")
    print(f"deleted {done.skipped} skipped events before {_at(done.skipped_before)}")
    print(
        f"deleted {done.dead_letters} dead-letter log rows before {_at(done.dead_letters_before)}"
    )
    return 0


def _at(when: datetime) -> str:
    return when.isoformat(timespec="seconds")
