"""Find the poison records of a failed batch by retrying it in halves.

A batch is applied in one transaction; when the transaction fails with a poison-class error,
the records that did not cause it still have to apply. ``isolate`` retries the batch in
halves (or splits off the record a :class:`~consumers.errors.PoisonError` names) until every
failure is pinned to a single record. Each successful slice is its own committed
transaction; the inbox makes re-applying a committed slice after a later outage a no-op, and
:class:`Progress` lets the caller resume with only what is left.

Retryable and fatal failures propagate unchanged: an outage is never a reason to dead-letter.

``beat`` is called after every transaction, committed or failed: a bisection of a large batch
runs many of them, each bounded by the transaction timeout, and the loop's liveness must see
that it is getting somewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from consumers.classify import Failure, classify
from consumers.errors import PoisonError

# A record is dead-lettered only after failing this many transactions (unless a
# PoisonError names it, which is the handler's own verdict).
SINGLE_ATTEMPTS = 2

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Poisoned(Generic[T]):
    item: T
    error: BaseException
    attempts: int  # how many failed transactions this record was part of


@dataclass(slots=True)
class Progress(Generic[T, R]):
    """What is settled so far: committed slices and isolated poison. Survives a retry."""

    results: list[R] = field(default_factory=list)
    settled: set[Hashable] = field(default_factory=set)
    poisoned: list[Poisoned[T]] = field(default_factory=list)
    attempts: dict[Hashable, int] = field(default_factory=dict)

    def remaining(self, items: Sequence[T], key: Callable[[T], Hashable]) -> list[T]:
        return [item for item in items if key(item) not in self.settled]


async def isolate(
    items: Sequence[T],
    apply: Callable[[Sequence[T]], Awaitable[R]],
    *,
    key: Callable[[T], Hashable],
    event_id: Callable[[T], str | None],
    progress: Progress[T, R],
    beat: Callable[[], None] = lambda: None,
) -> Progress[T, R]:
    """Apply ``items`` (already in order), isolating poison; see the module docstring."""

    async def run(items_: Sequence[T]) -> None:
        slice_ = list(items_)
        while slice_:
            try:
                result = await apply(slice_)
            except Exception as exc:
                if classify(exc) is not Failure.POISON:
                    raise
                beat()
                for item in slice_:
                    progress.attempts[key(item)] = progress.attempts.get(key(item), 0) + 1
                culprit = _named(exc, slice_, event_id)
                if culprit is not None:
                    settle_poison(slice_.pop(culprit), exc)
                    continue  # the rest, in one transaction again
                if len(slice_) == 1:
                    if progress.attempts[key(slice_[0])] < SINGLE_ATTEMPTS:
                        # Alone in its first transaction (a batch of one): try once more,
                        # so a lost race (a concurrent insert of the same key) is not dead.
                        continue
                    settle_poison(slice_[0], exc)
                    return
                middle = len(slice_) // 2
                await run(slice_[:middle])
                await run(slice_[middle:])
                return
            beat()
            progress.results.append(result)
            progress.settled.update(key(item) for item in slice_)
            return

    def settle_poison(item: T, exc: BaseException) -> None:
        progress.poisoned.append(Poisoned(item, exc, progress.attempts.get(key(item), 1)))
        progress.settled.add(key(item))

    await run(progress.remaining(items, key))
    return progress


def _named(
    exc: BaseException, slice_: Sequence[T], event_id: Callable[[T], str | None]
) -> int | None:
    """Index of the record a PoisonError names, if it is in this slice."""
    if not isinstance(exc, PoisonError) or exc.event_id is None:
        return None
    for index, item in enumerate(slice_):
        if event_id(item) == exc.event_id:
            return index
    return None
