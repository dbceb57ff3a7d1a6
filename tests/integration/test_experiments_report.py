"""``ingester experiments report`` against a hand-computed fixture in the real database.

Fixture: control 1000 exposures / 120 converted, treatment 1000 / 150, every conversion worth
10.00. By hand (z = 1.959964 for 95 %):
- control rate 0.12, Wilson 95 % [0.10130, 0.14161]; treatment 0.15, [0.12921, 0.17347];
- lift +0.03 absolute, +25 % relative;
- pooled p = 270 / 2000 = 0.135, SE = sqrt(0.135 * 0.865 * (1/1000 + 1/1000)) = 0.0152823,
  z = 0.03 / 0.0152823 = 1.96305, p = erfc(1.96305 / sqrt 2) = 0.04964 < 0.05: significant;
- revenue per exposure 1200 / 1000 = 1.20 and 1500 / 1000 = 1.50.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import pytest

from core.errors import CommandError
from core.settings import Settings
from ingester.report import report
from tests.integration.experiments_helpers import at, create_experiment

SIZES = {"control": (1000, 120), "treatment": (1000, 150)}


async def seed_results(pool: asyncpg.Pool, **columns: Any) -> None:
    seeded = await create_experiment(pool, "checkout", **columns)
    profiles, participations, conversions = [], [], []
    for variant, (exposed, converted) in SIZES.items():
        variant_id = seeded.variants[variant]
        for n in range(exposed):
            user = uuid.uuid4()
            did = n < converted
            profiles.append((user, f"{variant}-{n}@example.com"))
            participations.append(
                (user, seeded.experiment, variant_id, at(0), did, at(1) if did else None)
            )
            if did:
                conversions.append(
                    (uuid.uuid4(), user, variant_id, seeded.experiment, "purchase", Decimal(10))
                )
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("user_profiles", records=profiles, columns=["id", "email"])
        await conn.copy_records_to_table(
            "user_experiment_participation",
            records=participations,
            columns=[
                "user_id",
                "experiment_id",
                "variant_id",
                "first_exposure_date",
                "has_converted",
                "first_conversion_date",
            ],
        )
        await conn.copy_records_to_table(
            "conversions",
            records=conversions,
            columns=[
                "id",
                "user_id",
                "variant_id",
                "experiment_id",
                "conversion_type",
                "conversion_value",
            ],
        )


async def run(database_url: str, name: str, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = await report(Settings(database_url=database_url), name, fmt)
    assert code == 0
    return capsys.readouterr().out


async def test_json_report_matches_hand_computation(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_results(pool, target_sample_size=1000)
    body = orjson.loads(await run(database_url, "checkout", "json", capsys))
    assert body["control"] == "control"
    assert body["target_sample_size_reached"] is True
    assert body["experiment"]["confidence_level"] == 0.95
    control, treatment = body["variants"]
    assert (control["name"], control["exposures"], control["conversions"]) == (
        "control",
        1000,
        120,
    )
    assert control["conversion_rate"] == pytest.approx(0.12)
    assert control["ci_low"] == pytest.approx(0.10130, abs=1e-5)
    assert control["ci_high"] == pytest.approx(0.14161, abs=1e-5)
    assert control["p_value"] is None
    assert control["revenue_per_exposure"] == pytest.approx(1.20)
    assert treatment["conversion_rate"] == pytest.approx(0.15)
    assert treatment["ci_low"] == pytest.approx(0.12921, abs=1e-5)
    assert treatment["ci_high"] == pytest.approx(0.17347, abs=1e-5)
    assert treatment["absolute_lift"] == pytest.approx(0.03)
    assert treatment["relative_lift"] == pytest.approx(0.25)
    assert treatment["z"] == pytest.approx(1.96305, abs=1e-5)
    assert treatment["p_value"] == pytest.approx(0.04964, abs=1e-5)
    assert treatment["significant"] is True
    assert treatment["revenue"] == pytest.approx(1500.0)
    assert treatment["revenue_per_exposure"] == pytest.approx(1.50)


async def test_stricter_confidence_level_and_unreached_target(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_results(pool, confidence_level=Decimal("0.99"), target_sample_size=1001)
    body = orjson.loads(await run(database_url, "checkout", "json", capsys))
    assert body["target_sample_size_reached"] is False
    assert body["variants"][1]["significant"] is False  # 0.0496 is not below 0.01


async def test_table_and_html_formats(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed_results(pool)
    table = await run(database_url, "checkout", "table", capsys)
    lines = table.splitlines()
    control = next(line for line in lines if line.startswith("control"))
    treatment = next(line for line in lines if line.startswith("treatment"))
    assert control.split()[1:4] == ["1000", "120", "12.00%"]
    assert "[12.92%, 17.35%]" in treatment
    assert "+3.00 pp" in treatment and "+25.00%" in treatment and "0.0496" in treatment
    html = await run(database_url, "checkout", "html", capsys)
    assert html.startswith("<!doctype html>")
    assert "<svg" in html and "<script" not in html and "<link" not in html
    assert "12.00%" in html and "15.00%" in html


async def test_unknown_experiment_raises_and_prints_nothing(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(CommandError, match=r"^unknown experiment 'missing'$") as raised:
        await report(Settings(database_url=database_url), "missing", "table")

    assert raised.value.exit_code == 1
    assert capsys.readouterr().out == ""


async def test_unknown_format_is_bad_usage() -> None:
    with pytest.raises(CommandError, match="unknown format 'pdf'") as raised:
        await report(Settings(), "checkout", "pdf")

    assert raised.value.exit_code == 2
