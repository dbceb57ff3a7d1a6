"""RevenueCat's own experiments (docs/experiments.md, "RevenueCat experiments"): an
enrolment, from an EXPERIMENT_ENROLLMENT event or an ``experiments`` array, becomes a
participation in ``revenuecat:<experiment_id>`` (or the experiment an operator mapped it
onto), and purchases convert there like in first-party experiments."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from consumers.apply import apply_in_transaction
from consumers.handlers.experiments import ExperimentsHandler
from consumers.handlers.revenuecat import RevenueCatHandler
from consumers.types import Event, Handler
from tests.integration.experiments_helpers import (
    at,
    create_experiment,
    create_profile,
    participation,
)
from tests.integration.test_experiments_purchases import PRODUCTION, RC_ID, make_buyer, purchase
from tests.support import PENDING, retry_for
from tests.unit.test_cli import run_cli

HANDLERS: dict[str, Handler] = {"revenuecat": RevenueCatHandler(), "app": ExperimentsHandler()}
EXPERIMENT = "prexpca1234abcd"


def ms(hours: float) -> int:
    return int(at(hours).timestamp() * 1000)


def enrolment(
    hours: float, variant: str = "b", time_field: str = "experiment_enrolled_at_ms"
) -> Event:
    """Shaped like RevenueCat's sample: no store, no environment, no price."""
    event = purchase(
        at(hours),
        type="EXPERIMENT_ENROLLMENT",
        experiment_id=EXPERIMENT,
        experiment_variant=variant,
        offering_id=f"offering_{variant}",
    )
    data = dict(event.data)
    for name in ("price", "currency", "product_id", "environment"):
        data.pop(name)
    data[time_field] = ms(hours)
    return Event(event.source, event.id, event.type, event.time, event.partition_key, data)


def in_array(variant: str, hours: float) -> dict[str, Any]:
    return {
        "experiments": [
            {
                "experiment_id": EXPERIMENT,
                "experiment_variant": variant,
                "enrolled_at_ms": ms(hours),
            }
        ]
    }


async def deliver(pool: asyncpg.Pool, *batch: Event) -> list[tuple[str, str | None]]:
    settled = []
    for event in batch:
        report = await apply_in_transaction(
            pool, HANDLERS, [event], PRODUCTION, backoff_max_s=PENDING.backoff_max_s
        )
        settled += [(s.disposition.value, s.reason) for s in report.settled]
    return settled


async def test_an_enrolment_then_a_purchase_show_in_the_report(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    buyer = await make_buyer(pool)
    enrolled, bought = enrolment(0), purchase(at(2))
    assert await deliver(pool, enrolled, bought, enrolled) == [
        ("applied", None),
        ("applied", None),
        ("duplicate", None),
    ]

    experiment = await pool.fetchrow(
        "SELECT id, status::text, is_active, description FROM experiments WHERE name = $1",
        f"revenuecat:{EXPERIMENT}",
    )
    assert experiment is not None
    assert tuple(experiment)[1:] == ("active", True, f"RevenueCat experiment {EXPERIMENT}")
    variant = await pool.fetchrow("SELECT id, config_json::text FROM variants WHERE name = 'b'")
    assert variant is not None
    assert orjson.loads(variant["config_json"]) == {"revenuecat_offering_id": "offering_b"}
    part = await participation(pool, buyer)
    assert part is not None
    assert (part["variant_id"], part["first_exposure_date"], part["has_converted"]) == (
        variant["id"],
        at(0),
        True,
    )

    env = {"DATABASE_URL": database_url}
    result = await asyncio.to_thread(
        run_cli,
        "experiments",
        "report",
        f"revenuecat:{EXPERIMENT}",
        "--format",
        "json",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (shown,) = orjson.loads(result.stdout)["variants"]
    assert (shown["name"], shown["exposures"], shown["conversions"], shown["revenue"]) == (
        "b",
        1,
        1,
        9.99,
    )


async def test_the_sample_field_and_the_table_field_of_the_enrolment_time(
    pool: asyncpg.Pool,
) -> None:
    buyer = await make_buyer(pool)
    await deliver(pool, enrolment(3, time_field="enrolled_at_ms"))
    part = await participation(pool, buyer)
    assert part is not None and part["first_exposure_date"] == at(3)


async def test_an_experiments_array_on_a_purchase_enrols_and_converts(pool: asyncpg.Pool) -> None:
    buyer = await make_buyer(pool)
    assert await deliver(pool, purchase(at(2), **in_array("a", 1))) == [("applied", None)]
    part = await participation(pool, buyer)
    assert part is not None and part["has_converted"]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 1


async def test_the_event_and_the_arrays_speaking_of_one_enrolment_make_one_exposure(
    pool: asyncpg.Pool,
) -> None:
    buyer = await make_buyer(pool)
    await deliver(
        pool,
        purchase(at(2), **in_array("b", 1)),
        enrolment(1),
        purchase(at(30), type="RENEWAL", **in_array("b", 1)),
        # RevenueCat names another variant later: stored, not counted.
        purchase(at(40), type="RENEWAL", **in_array("a", 35)),
    )
    part = await participation(pool, buyer)
    assert part is not None
    assert (part["first_exposure_date"], part["total_impressions"]) == (at(1), 1)
    rows = await pool.fetch(
        "SELECT v.name, i.user_was_eligible FROM impressions i"
        " JOIN variants v ON v.id = i.variant_id ORDER BY i.impression_at"
    )
    assert [tuple(r) for r in rows] == [("b", True), ("a", False)]
    assert await pool.fetchval("SELECT count(*) FROM conversions") == 3


async def test_a_mapped_experiment_takes_the_enrolments(pool: asyncpg.Pool) -> None:
    buyer = await make_buyer(pool)
    pricing = await create_experiment(pool, "pricing-2024", variants=("control", "cheaper"))
    await pool.execute(
        "INSERT INTO ingest_revenuecat_experiment_map"
        " (revenuecat_experiment_id, experiment_id, variant_names)"
        ' VALUES ($1, $2, \'{"b": "cheaper"}\')',
        EXPERIMENT,
        pricing.experiment,
    )
    await deliver(pool, enrolment(0), purchase(at(1)))
    part = await participation(pool, buyer)
    assert part is not None
    assert (part["experiment_id"], part["variant_id"], part["has_converted"]) == (
        pricing.experiment,
        pricing.variants["cheaper"],
        True,
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM experiments WHERE name LIKE 'revenuecat:%'") == 0
    )


async def test_a_mapped_variant_the_experiment_lacks_waits_for_it(pool: asyncpg.Pool) -> None:
    buyer = await make_buyer(pool)
    pricing = await create_experiment(pool, "pricing-2024", variants=("control",))
    await pool.execute(
        "INSERT INTO ingest_revenuecat_experiment_map (revenuecat_experiment_id, experiment_id)"
        " VALUES ($1, $2)",
        EXPERIMENT,
        pricing.experiment,
    )
    enrolled = enrolment(0)
    assert await deliver(pool, enrolled) == [("applied", None)]
    parked = await pool.fetchrow("SELECT event_id, reason, waits_for FROM ingest_pending")
    assert parked is not None
    assert tuple(parked) == (
        f"{enrolled.id}/enrollment",
        "unknown variant",
        ["experiment:pricing-2024"],
    )
    await pool.execute(
        "INSERT INTO variants (experiment_id, name) VALUES ($1, 'b')", pricing.experiment
    )
    assert (await retry_for(pool, HANDLERS, environment="production").run()).totals()[
        "applied"
    ] == 1
    assert await participation(pool, buyer) is not None


async def test_an_enrolment_before_the_profile_applies_once_the_profile_exists(
    pool: asyncpg.Pool,
) -> None:
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ('u', 'Zoe@Example.com') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO user_revenue_cat_ids (uid, user_id, revenue_cat_id, revenue_cat_attributes,"
        " created_at, checked_at) VALUES ('iu', $1, $2, '{}', 0, 0)",
        user_id,
        RC_ID,
    )
    enrolled = enrolment(0)
    assert await deliver(pool, enrolled, purchase(at(1))) == [("applied", None)] * 2
    parked = await pool.fetchrow("SELECT reason, waits_for FROM ingest_pending")
    assert parked is not None
    assert tuple(parked) == ("enrolment before profile", ["profile_email:zoe@example.com"])

    profile = await create_profile(pool, "zoe@example.com")
    retry = retry_for(pool, HANDLERS, environment="production")
    first = await retry.run_pass()
    assert (first.woken, first.totals()["applied"]) == (1, 1)
    part = await participation(pool, profile)
    assert part is not None and part["has_converted"]  # the ledger's purchase converts
    assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0
