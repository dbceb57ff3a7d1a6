from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest

from consumers.errors import PoisonError
from consumers.isolate import Progress, isolate


class Store:
    """Applies integers; ``bad`` ones fail their whole transaction, like a constraint would."""

    def __init__(self, bad: set[int], named: bool = False) -> None:
        self.bad = bad
        self.named = named
        self.committed: list[int] = []
        self.transactions = 0
        self.outage = False

    async def apply(self, items: Sequence[int]) -> list[int]:
        self.transactions += 1
        if self.outage:
            raise ConnectionRefusedError("database down")
        for item in items:
            if item in self.bad:
                if self.named:
                    raise PoisonError("bad item", event_id=str(item))
                raise asyncpg.CheckViolationError("violates check")
        self.committed.extend(items)
        return list(items)


async def run(
    store: Store, items: list[int], progress: Progress[int, list[int]] | None = None
) -> Progress[int, list[int]]:
    return await isolate(
        items,
        store.apply,
        key=lambda i: i,
        event_id=str,
        progress=progress if progress is not None else Progress(),
    )


@pytest.mark.parametrize(
    ("items", "bad"),
    [
        pytest.param(list(range(8)), set(), id="clean batch"),
        pytest.param(list(range(8)), {5}, id="one poison"),
        pytest.param(list(range(9)), {0, 8}, id="first and last"),
        pytest.param(list(range(16)), {3, 4, 11}, id="several"),
        pytest.param([7], {7}, id="batch of one"),
        pytest.param(list(range(4)), {0, 1, 2, 3}, id="all poison"),
    ],
)
async def test_everything_but_the_poison_applies_in_order(items: list[int], bad: set[int]) -> None:
    store = Store(bad)
    progress = await run(store, items)
    assert store.committed == [i for i in items if i not in bad]
    assert sorted(p.item for p in progress.poisoned) == sorted(bad)
    assert all(isinstance(p.error, asyncpg.CheckViolationError) for p in progress.poisoned)


async def test_a_clean_batch_is_one_transaction() -> None:
    store = Store(set())
    await run(store, list(range(100)))
    assert store.transactions == 1


async def test_a_lone_record_gets_a_second_chance() -> None:
    store = Store({1})
    progress = await run(store, [1])
    assert store.transactions == 2
    assert progress.poisoned[0].attempts == 2


async def test_attempts_count_the_failed_transactions_a_record_was_in() -> None:
    store = Store({0})
    progress = await run(store, list(range(8)))
    # 8 -> 4 -> 2 -> 1: four failed transactions include record 0.
    assert progress.poisoned[0].attempts == 4


async def test_a_named_poison_is_split_off_without_bisecting() -> None:
    store = Store({2, 6}, named=True)
    progress = await run(store, list(range(8)))
    assert store.transactions == 3
    assert [p.item for p in progress.poisoned] == [2, 6]
    assert store.committed == [0, 1, 3, 4, 5, 7]


async def test_many_named_poison_records_do_not_recurse() -> None:
    store = Store(set(range(0, 1500, 2)), named=True)
    progress = await run(store, list(range(1500)))
    assert len(progress.poisoned) == 750


async def test_an_outage_propagates_and_the_retry_resumes_with_what_is_left() -> None:
    store = Store({5})
    progress: Progress[int, list[int]] = Progress()

    original = store.apply
    calls = 0

    async def flaky(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 3:  # after the first half committed, the database goes away
            raise ConnectionRefusedError("database down")
        return await original(items)

    store.apply = flaky  # type: ignore[method-assign]
    with pytest.raises(ConnectionRefusedError):
        await run(store, list(range(8)), progress)
    assert store.committed == [0, 1, 2, 3]
    await run(store, list(range(8)), progress)
    assert store.committed == [0, 1, 2, 3, 4, 6, 7]
    assert [p.item for p in progress.poisoned] == [5]


async def test_fatal_errors_are_not_isolated() -> None:
    async def broken(items: Sequence[int]) -> None:
        raise asyncpg.UndefinedTableError("relation does not exist")

    with pytest.raises(asyncpg.UndefinedTableError):
        await isolate([1, 2], broken, key=lambda i: i, event_id=str, progress=Progress())


@pytest.mark.parametrize(
    ("items", "bad"),
    [
        pytest.param(list(range(8)), set(), id="clean batch"),
        pytest.param(list(range(16)), {3, 4, 11}, id="several"),
        pytest.param(list(range(4)), {0, 1, 2, 3}, id="all poison"),
    ],
)
async def test_every_transaction_beats_the_liveness(items: list[int], bad: set[int]) -> None:
    store = Store(bad)
    beats: list[int] = []
    await isolate(
        items,
        store.apply,
        key=lambda i: i,
        event_id=str,
        progress=Progress(),
        beat=lambda: beats.append(store.transactions),
    )
    assert beats == list(range(1, store.transactions + 1))
