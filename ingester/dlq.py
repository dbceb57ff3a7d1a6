"""``ingester dlq list`` and ``ingester dlq replay``: the dead letters, shown or re-published
while the DLQ topic is streamed (:mod:`consumers.operations`), so ``--limit 10`` answers at
once on any DLQ size."""

from __future__ import annotations

from contextlib import aclosing

from consumers import dlq
from consumers.operations import (
    DlqPass,
    Replayed,
    dlq_topic,
    list_dead_letters,
    replay_dead_letters,
)
from core.settings import Settings
from ingester.output import one_line

HEADER = "dlq_offset\tsource\terror_class\tattempts\treplays\tevent_id\tdead_at\terror"


def _line(r: dlq.Described) -> str:
    fields = (r.dlq_offset, r.source, r.error_class, r.attempts, r.replays, r.event_id)
    return "\t".join(one_line(str(f)) for f in (*fields, r.dead_at, r.error))


async def dlq_list(
    settings: Settings, limit: int | None = None, *, done: DlqPass | None = None
) -> int:
    """Print the dead letters, one line each, the first ``limit`` of them if given, then
    how many. ``done``, if given, is kept up to date (shown, records read)."""
    topic = dlq_topic(settings)
    done = DlqPass() if done is None else done
    header = [HEADER]
    async with aclosing(list_dead_letters(settings, limit, done)) as chunks:
        async for chunk in chunks:
            # One write per chunk: a line-buffered or unbuffered stdout would otherwise
            # cost a system call per dead letter.
            print("\n".join([*header, *(_line(d) for d in chunk)]))
            header = []
    if not done.shown:
        print(f"no dead letters in {topic}")
    elif limit is not None and done.shown >= limit:
        print(f"first {done.shown} dead letter(s) in {topic} (--limit {limit})")
    else:
        print(f"{done.shown} dead letter(s) in {topic}")
    return 0


def _replay_line(outcome: Replayed, dry_run: bool) -> str:
    if outcome.plan is None:
        return f"refused {outcome.position} ({outcome.event_id}): {outcome.refusal}"
    return (
        f"{'would replay' if dry_run else 'replay'} {outcome.position} ({outcome.event_id})"
        f" -> {outcome.plan.topic} (replay {outcome.plan.count})"
    )


async def dlq_replay(
    settings: Settings, dry_run: bool, limit: int | None, *, done: DlqPass | None = None
) -> int:
    """Re-publish dead letters not yet replayed to their source topic, a line per record as
    it goes, then how many were replayed and refused. ``done``, if given, is kept up to
    date (replayed, refused, records read)."""
    done = DlqPass() if done is None else done
    async with aclosing(replay_dead_letters(settings, dry_run, limit, done)) as outcomes:
        async for outcome in outcomes:
            print(_replay_line(outcome, dry_run))
    verb = "would replay" if dry_run else "replayed"
    print(f"{verb} {done.shown} dead letter(s), refused {done.refused}")
    return 0
