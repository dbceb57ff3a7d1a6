"""The publisher's byte budget admits requests first come, first served."""

from __future__ import annotations

import asyncio

import pytest

from ingest.budget import ByteBudget


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_admits_at_once_under_the_limit() -> None:
    budget = ByteBudget(100)

    await budget.acquire(60)
    await budget.acquire(40)

    assert budget.used == 100


async def test_waiters_are_admitted_in_arrival_order_as_room_frees() -> None:
    budget = ByteBudget(100)
    await budget.acquire(90)
    admitted: list[str] = []

    async def request(name: str, size: int) -> None:
        await budget.acquire(size)
        admitted.append(name)

    big = asyncio.create_task(request("big", 50))
    await settle()
    small = asyncio.create_task(request("small", 5))  # would fit, but must not overtake
    await settle()
    assert admitted == []

    budget.release(90)
    await asyncio.gather(big, small)

    assert admitted == ["big", "small"]
    assert budget.used == 55


async def test_a_request_larger_than_the_budget_goes_alone() -> None:
    budget = ByteBudget(100)

    await budget.acquire(500)
    assert budget.used == 500
    blocked = asyncio.create_task(budget.acquire(1))
    await settle()
    assert not blocked.done()

    budget.release(500)
    await blocked
    assert budget.used == 1


async def test_a_cancelled_wait_takes_nothing_and_lets_the_next_in() -> None:
    budget = ByteBudget(100)
    await budget.acquire(80)
    first = asyncio.create_task(budget.acquire(50))
    await settle()
    second = asyncio.create_task(budget.acquire(20))
    await settle()

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second

    assert budget.used == 100
    assert budget.waiting == 0


async def test_try_acquire_never_overtakes_a_waiting_request() -> None:
    budget = ByteBudget(100)
    assert budget.try_acquire(90)
    waiting = asyncio.create_task(budget.acquire(50))
    await settle()

    assert not budget.try_acquire(5)  # fits, but a request is already waiting
    budget.release(90)
    await waiting
    assert budget.try_acquire(50)
    assert budget.used == 100
