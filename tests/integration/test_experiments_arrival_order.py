"""The earliest exposure decides the variant, whatever order the impressions arrive in
(docs/experiments.md, "Impressions and participation"): the participation, the eligibility
of each impression, the counts and the conversions end the same in every order."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import asyncpg
import pytest

from tests.integration.experiments_helpers import (
    Seeded,
    apply,
    at,
    create_experiment,
    events,
    item,
    participation,
    snapshot,
)

USER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> Seeded:
    await pool.execute("INSERT INTO user_profiles (id, email) VALUES ($1, 'ann@example.com')", USER)
    return await create_experiment(pool, variants=("a", "b"))


async def test_an_earlier_impression_of_another_variant_decides(
    pool: asyncpg.Pool, seeded: Seeded
) -> None:
    t2 = item("impression", USER, at(2), variant="b")
    t1 = item("impression", USER, at(1), variant="a")
    await apply(pool, events(t2))
    await apply(pool, events(t1))

    part = await participation(pool, USER)
    assert part is not None
    assert (part["variant_id"], part["first_exposure_date"], part["total_impressions"]) == (
        seeded.variants["a"],
        at(1),
        1,
    )
    rows = await pool.fetch(
        "SELECT id, is_first_exposure, user_was_eligible, user_eligibility_status AS s"
        " FROM impressions ORDER BY impression_at"
    )
    assert [(r["id"], r["is_first_exposure"], r["user_was_eligible"]) for r in rows] == [
        (uuid.UUID(t1["id"]), True, True),
        (uuid.UUID(t2["id"]), False, False),
    ]
    assert '"reason": "assigned_to_other_variant"' in rows[1]["s"]
    assert str(seeded.variants["a"]) in rows[1]["s"]


async def test_conversions_and_attribution_move_with_the_variant(
    pool: asyncpg.Pool, seeded: Seeded
) -> None:
    await apply(pool, events(item("impression", USER, at(2), variant="b")))
    bought = item("conversion", USER, at(3), variant="b", conversion_value=5)
    await apply(pool, events(bought))
    await apply(pool, events(item("impression", USER, at(1), variant="a")))

    row = await pool.fetchrow(
        "SELECT c.variant_id, c.time_to_convert, c.original_exposure_date,"
        " c.conversion_context->>'reported_variant' AS reported, a.variant_id AS credited,"
        " a.time_to_conversion_hours AS hours FROM conversions c"
        " JOIN conversion_attribution a ON a.conversion_id = c.id"
    )
    assert row is not None
    assert dict(row) == {
        "variant_id": seeded.variants["a"],
        "time_to_convert": 2 * 3600,
        "original_exposure_date": at(1),
        "reported": "b",
        "credited": seeded.variants["a"],
        "hours": 2,
    }


IMPRESSIONS: list[dict[str, Any]] = [
    item("impression", USER, at(1), variant="a", id=uuid.UUID(int=1)),
    item("impression", USER, at(2), variant="b", id=uuid.UUID(int=2)),
    item("impression", USER, at(3), variant="a", id=uuid.UUID(int=3)),
    item("impression", USER, at(4), variant="b", id=uuid.UUID(int=4)),
    item(
        "conversion",
        USER,
        at(5),
        variant="b",
        id=uuid.UUID(int=5),
        conversion_value=7,
        conversion_context={"page": "x"},
    ),
]


async def apply_in(pool: asyncpg.Pool, order: tuple[int, ...]) -> dict[str, Any]:
    await pool.execute(
        "TRUNCATE impressions, conversions, conversion_attribution, user_experiment_participation"
    )
    for i in order:
        await apply(pool, events(IMPRESSIONS[i]))
    return await snapshot(pool)


async def test_every_arrival_order_ends_in_the_same_rows(
    pool: asyncpg.Pool, seeded: Seeded
) -> None:
    del seeded
    expected = await apply_in(pool, (0, 1, 2, 3, 4))
    assert [r[1:5] for r in expected["impressions"]] == [
        ("a", at(1), True, True),
        ("b", at(2), False, False),
        ("a", at(3), False, True),
        ("b", at(4), False, False),
    ]
    # Every order in which the conversion comes after an impression (before, it is parked).
    for order in itertools.permutations(range(5)):
        if order[0] == 4:
            continue
        assert await apply_in(pool, order) == expected, order


async def test_one_batch_with_both_variants_keeps_the_earliest(
    pool: asyncpg.Pool, seeded: Seeded
) -> None:
    await apply(pool, events(*reversed(IMPRESSIONS[:4])))
    part = await participation(pool, USER)
    assert part is not None
    assert (part["variant_id"], part["total_impressions"]) == (seeded.variants["a"], 2)
    assert await pool.fetchval("SELECT count(*) FROM impressions WHERE user_was_eligible") == 2
