"""The poison-flood guard: most of a source's recent records dying is a broken deployment (or a
provider sending garbage), not the odd bad record.

Each source (``ce_source``) has its own rolling window: its most recent records, batch by
batch newest first until about ``window_records`` of them, none older than ``window_s``. A
source **floods** when its window holds at least ``min_records`` records and ``min_dead``
dead letters, and the dead letters are more than ``max_share`` of its records (the numbers
are the :class:`~consumers.policies.FloodPolicy`). The minimum sample is what makes this a
verdict rather than a reflex: a healthy stream, whose poison is a fraction of a percent,
practically never shows more than half poison among 100 records (the binomial tail is below
1e-100), while 3 dead among 5 records says nothing about a deployment.

What a flood does depends on what holding would cost. The consumer holds its partitions of
every topic it reads, so holding stalls every source:
- when every source this consumer handles floods (a one-source deployment, or a regression
  that kills everything), :meth:`FloodGuard.check` raises :class:`PoisonFlood` and the runner
  holds: nothing of the batch is dead-lettered or committed;
- otherwise the flooding sources are **alerted**, not held: ``consumer_poison_flood{source}``
  is 1 and one CRITICAL line says so while their poison is dead-lettered and the rest commits
  as usual (docs/contract.md §6); the gauge drops to 0 when the window no longer floods.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from consumers import metrics
from consumers.errors import ConsumerError
from consumers.policies import FloodPolicy
from contract.topics import SOURCE_OF_STREAM

log = logging.getLogger("consumers.flood")


@dataclass(frozen=True, slots=True)
class Tally:
    """Records of one source in a batch, and how many of them are dead letters."""

    records: int
    dead: int


class PoisonFlood(ConsumerError):
    """Every source of this consumer floods: holding stalls nothing healthy."""

    def __init__(self, windows: Mapping[str, Tally], share: float) -> None:
        counts = ", ".join(f"{s}: {t.dead} of the last {t.records}" for s, t in windows.items())
        super().__init__(
            f"poison in every source of this consumer ({counts} records; more than"
            f" {share:.0%}); holding instead of dead-lettering them"
        )
        self.windows = dict(windows)
        self.dead = sum(t.dead for t in windows.values())
        self.size = sum(t.records for t in windows.values())


@dataclass(frozen=True, slots=True)
class _Entry:
    at: float
    records: int
    dead: int


class _Window:
    """One source's batches, oldest first, trimmed to the policy's records and seconds."""

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.records = 0

    def expire(self, now: float, window_s: float) -> None:
        while self.entries and now - self.entries[0].at > window_s:
            self.records -= self.entries.popleft().records

    def with_batch(self, batch: Tally, window_records: int) -> Tally:
        """The window as it would be with ``batch``: the batch, then earlier batches newest
        first until it holds at least ``window_records`` records (whole batches: which
        records of a batch died is not kept)."""
        records, dead = batch.records, batch.dead
        for entry in reversed(self.entries):
            if records >= window_records:
                break
            records += entry.records
            dead += entry.dead
        return Tally(records, dead)

    def add(self, at: float, batch: Tally, window_records: int) -> None:
        self.entries.append(_Entry(at, batch.records, batch.dead))
        self.records += batch.records
        while self.entries and self.records - self.entries[0].records >= window_records:
            self.records -= self.entries.popleft().records


class FloodGuard:
    """Per-source flood verdicts for a consumer of ``sources`` (see the module docstring)."""

    def __init__(self, policy: FloodPolicy, sources: Collection[str]) -> None:
        self.policy = policy
        self.sources = frozenset(sources)
        self.flooding: set[str] = set()  # sources alerted now
        self._windows: dict[str, _Window] = {}
        for source in self.sources:  # a sample from the start: 0 is "no flood", not "unknown"
            metrics.POISON_FLOOD.labels(source).set(0)

    def floods(self, window: Tally) -> bool:
        p = self.policy
        return (
            window.records >= p.min_records
            and window.dead >= p.min_dead
            and window.dead > p.max_share * window.records
        )

    def check(self, now: float, batch: Mapping[str, Tally]) -> frozenset[str]:
        """Count a batch (records and dead letters per source), seen at ``now`` (monotonic
        seconds); return the sources that flood. Raises :class:`PoisonFlood`, without
        counting the batch, when every source of this consumer floods."""
        for window in self._windows.values():
            window.expire(now, self.policy.window_s)
        views = {
            source: self._windows.get(source, _Window()).with_batch(
                batch.get(source, Tally(0, 0)), self.policy.window_records
            )
            for source in {*self._windows, *batch}
        }
        flooding = {source for source, view in views.items() if self.floods(view)}
        if self.sources and self.sources <= flooding:
            raise PoisonFlood({s: views[s] for s in sorted(self.sources)}, self.policy.max_share)
        for source, tally in batch.items():
            self._windows.setdefault(source, _Window()).add(now, tally, self.policy.window_records)
        self._alert(flooding, views)
        return frozenset(flooding)

    def _alert(self, flooding: set[str], views: Mapping[str, Tally]) -> None:
        for source in sorted(flooding - self.flooding):
            metrics.POISON_FLOOD.labels(source).set(1)
            view = views[source]
            log.critical(
                "poison flood: alerting; dead-lettering as usual, since holding would stall"
                " the healthy sources",
                extra={"source": source, "dead": view.dead, "records": view.records},
            )
        for source in sorted(self.flooding - flooding):
            metrics.POISON_FLOOD.labels(source).set(0)
            log.warning("poison flood over", extra={"source": source})
        self.flooding = flooding

    def hold(self, flood: PoisonFlood) -> None:
        """The runner holds: every source's gauge is 1 until the process ends."""
        for source in flood.windows:
            metrics.POISON_FLOOD.labels(source).set(1)


def tally(keys: Iterable[tuple[str, bool]]) -> dict[str, Tally]:
    """Per-source counts of a batch from (source, dead) for each of its records."""
    counts: dict[str, list[int]] = {}
    for source, dead in keys:
        count = counts.setdefault(source, [0, 0])
        count[0] += 1
        count[1] += int(dead)
    return {source: Tally(records, dead) for source, (records, dead) in counts.items()}


def source_key(declared: str | None, topic: str, sources: Collection[str]) -> str:
    """The window a record counts in: the source it declares (``ce_source``) when this
    consumer handles it, else the source whose topic it was read from (``{prefix}ingest.
    {stream}.v1``), else the topic. Never a value a malformed record made up, so the
    gauge's labels stay few."""
    if declared in sources:
        return str(declared)
    parts = topic.rsplit(".", 3)
    if len(parts) >= 3 and parts[-1] == "v1" and parts[-3].endswith("ingest"):
        source = SOURCE_OF_STREAM.get(parts[-2])
        if source in sources:
            return str(source)
    return topic
