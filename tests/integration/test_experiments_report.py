"""``ingester experiments report`` against the real database.

Main fixture: control 1000 exposures / 120 converted, treatment 1000 / 150, every conversion
worth 10.00, exposures spread over ten days (user n on day n % 10), weights 50/50 in
``variants.config_json``. By hand (z = 1.959964 for 95 %):
- control rate 0.12, Wilson 95 % [0.10130, 0.14161]; treatment 0.15, [0.12921, 0.17347];
- lift +0.03 absolute, +25 % relative; unpooled se = sqrt(.12 * .88 / 1000 + .15 * .85 / 1000)
  = 0.0152676, z = 1.96494, fixed-horizon p = 0.049421: significant at 0.95, not at 0.99;
- the sequential confidence sequence at 2000 exposures is wider: not significant;
- revenue per exposure 1.20 and 1.50.
Refunds, winsorisation and multiple exposures use small fixtures of their own.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import orjson
import pytest
from scipy import stats

from core.errors import CommandError
from core.settings import Settings
from ingester.report import build, report
from ingester.report.model import ReportOptions
from tests.integration.experiments_helpers import at, create_experiment
from tests.unit.test_cli import one_line, run_cli


@dataclass
class User:
    exposed: datetime
    purchases: list[tuple[str, Decimal, datetime]] = field(default_factory=list)

    @property
    def converted(self) -> datetime | None:
        bought = [moment for kind, _, moment in self.purchases if kind != "refund"]
        return min(bought) if bought else None


def buys(exposed: datetime, *amounts: str, refunds: tuple[str, ...] = ()) -> User:
    purchases = [("purchase", Decimal(a), exposed.replace(hour=13)) for a in amounts]
    purchases += [("refund", Decimal(r), exposed.replace(hour=14)) for r in refunds]
    return User(exposed, purchases)


async def seed(
    pool: asyncpg.Pool,
    users: dict[str, list[User]],
    name: str = "checkout",
    weights: dict[str, Any] | None = None,
    **columns: Any,
) -> dict[str, list[uuid.UUID]]:
    """Profiles, participations and conversions as rows, the way the consumers store them."""
    seeded = await create_experiment(pool, name, variants=tuple(users), **columns)
    profiles, participations, conversions = [], [], []
    ids: dict[str, list[uuid.UUID]] = {}
    for variant, people in users.items():
        variant_id = seeded.variants[variant]
        for n, person in enumerate(people):
            user = uuid.uuid4()
            ids.setdefault(variant, []).append(user)
            profiles.append((user, f"{name}-{variant}-{n}@example.com"))
            converted = person.converted
            participations.append(
                (
                    user,
                    seeded.experiment,
                    variant_id,
                    person.exposed,
                    converted is not None,
                    converted,
                )
            )
            for kind, value, moment in person.purchases:
                conversions.append(
                    (uuid.uuid4(), user, variant_id, seeded.experiment, kind, value, moment)
                )
    async with pool.acquire() as conn:
        if weights:
            for variant, config in weights.items():
                await conn.execute(
                    "UPDATE variants SET config_json = $1::jsonb WHERE id = $2",
                    orjson.dumps(config).decode(),
                    seeded.variants[variant],
                )
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
                "created_at",
            ],
        )
    return ids


def main_fixture() -> dict[str, list[User]]:
    def users(exposed: int, converted: int) -> list[User]:
        return [
            buys(at(days=n % 10), "10") if n < converted else User(at(days=n % 10))
            for n in range(exposed)
        ]

    return {"control": users(1000, 120), "treatment": users(1000, 150)}


HALF = {"control": {"weight": 0.5}, "treatment": {"weight": 0.5}}


async def run(
    database_url: str,
    name: str,
    fmt: str,
    capsys: pytest.CaptureFixture[str],
    options: ReportOptions | None = None,
) -> str:
    code = await report(Settings(database_url=database_url), name, fmt, options)
    assert code == 0, capsys.readouterr().err
    return capsys.readouterr().out


async def test_json_report_matches_hand_computation(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(pool, main_fixture(), weights=HALF, target_sample_size=1000)
    options = ReportOptions(method="fixed")
    body = orjson.loads(await run(database_url, "checkout", "json", capsys, options))
    assert (body["schema_version"], body["control"], body["target_sample_size_reached"]) == (
        2,
        "control",
        True,
    )
    assert body["srm_p_value"] == 1.0 and body["srm_flagged"] is False
    assert body["srm"]["weights"] == "config" and body["multiple_exposure_users"] == 0
    assert body["method"]["kind"] == "fixed" and body["winner"] == "treatment"
    control, treatment = body["variants"]
    assert (control["weight"], control["exposures"], control["conversions"]) == (0.5, 1000, 120)
    assert control["rate"] == pytest.approx(0.12)
    assert (control["ci_low"], control["ci_high"]) == pytest.approx((0.10130, 0.14161), abs=1e-5)
    assert control["p_value"] is None and control["revenue_per_exposure"] == pytest.approx(1.2)
    assert (treatment["ci_low"], treatment["ci_high"]) == pytest.approx(
        (0.12921, 0.17347), abs=1e-5
    )
    assert treatment["lift"] == pytest.approx(0.03)
    assert treatment["relative_lift"] == pytest.approx(0.25)
    assert treatment["p_value"] == pytest.approx(0.049421, abs=1e-6)
    assert treatment["p_value_adjusted"] == treatment["p_value"]
    assert treatment["significant"] is True
    assert treatment["revenue"] == pytest.approx(1500.0)
    assert treatment["revenue_per_exposure"] == pytest.approx(1.50)
    welch = stats.ttest_ind([10.0] * 150 + [0.0] * 850, [10.0] * 120 + [0.0] * 880, equal_var=False)
    assert treatment["revenue_p_value"] == pytest.approx(float(welch.pvalue), abs=1e-9)
    one = stats.ttest_1samp([10.0] * 150 + [0.0] * 850, 0).confidence_interval(0.95)
    assert (treatment["revenue_ci_low"], treatment["revenue_ci_high"]) == pytest.approx(
        (float(one.low), float(one.high)), abs=1e-9
    )
    days = body["timeline"]["treatment"]
    assert len(days) == 10 and days[0]["day"] == at().date().isoformat()
    assert (days[-1]["exposures"], days[-1]["conversions"]) == (1000, 150)
    assert days[-1]["lift"] == pytest.approx(treatment["lift"])
    assert days[-1]["lift_ci_low"] == pytest.approx(treatment["lift_ci_low"])


async def test_sequential_default_and_stricter_confidence_level(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(pool, main_fixture(), confidence_level=Decimal("0.99"), target_sample_size=1001)
    body = orjson.loads(await run(database_url, "checkout", "json", capsys))
    assert body["target_sample_size_reached"] is False
    assert body["method"]["kind"] == "sequential" and body["method"]["alpha"] == 0.01
    assert body["method"]["tuning_sample_size"] == 2002
    assert body["variants"][1]["significant"] is False
    assert body["winner"] is None and body["srm"]["weights"] == "equal"


async def test_planning_from_the_tables(pool: asyncpg.Pool, database_url: str) -> None:
    await seed(pool, main_fixture(), weights=HALF, target_sample_size=1500)
    conn = await asyncpg.connect(database_url)
    try:
        options = ReportOptions(method="fixed")
        built = await build(conn, "checkout", options, as_of=at(days=9, hours=1))
    finally:
        await conn.close()
    assert built is not None
    info, analysis = built
    plan = analysis.planning
    assert info.minimum_detectable_effect == 0.05  # the column's default
    assert plan.daily_exposures == pytest.approx(200.0)  # days 3 to 9: 700 per variant
    needed = analysis.variants[0].exposures_needed
    assert needed is not None and analysis.variants[1].exposures_needed == needed
    assert plan.exposures_still_needed == 2 * (needed - 1000)
    assert plan.days_left == pytest.approx((needed - 1000) / 100)
    assert plan.days_to_target == pytest.approx(5.0)


async def test_sample_ratio_mismatch_against_the_configured_weights(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = {"control": {"weight": 0.4}, "treatment": {"weight": 0.6, "colour": "green"}}
    await seed(pool, main_fixture(), weights=weights)
    body = orjson.loads(await run(database_url, "checkout", "json", capsys))
    assert body["srm_flagged"] is True and body["srm_p_value"] < 0.001
    assert [v["weight"] for v in body["variants"]] == [0.4, 0.6]
    assert body["winner"] is None and "sample ratio mismatch" in body["verdict"]
    table = await run(database_url, "checkout", "table", capsys)
    assert table.splitlines()[0].startswith("SAMPLE RATIO MISMATCH")


async def test_revenue_is_net_of_refunds(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    day = at()
    users = {
        "control": [
            buys(day, "30.00", refunds=("10.00",)),  # net 20
            buys(day, "50.00", refunds=("50.00",)),  # refunded in full: net 0, still converted
            buys(day, "20.00"),
            User(day),
        ],
        "treatment": [buys(day, "40.00", "25.50", refunds=("5.50",)), User(day), User(day)],
    }
    await seed(pool, users, name="refunds")
    body = orjson.loads(await run(database_url, "refunds", "json", capsys))
    control, treatment = body["variants"]
    assert (control["conversions"], treatment["conversions"]) == (3, 1)  # refunds are not
    assert control["revenue"] == pytest.approx(40.0) and treatment["revenue"] == pytest.approx(60.0)
    assert control["revenue_per_exposure"] == pytest.approx(10.0)
    interval = stats.ttest_1samp([20.0, 0.0, 20.0, 0.0], 0).confidence_interval(0.95)
    assert (control["revenue_ci_low"], control["revenue_ci_high"]) == pytest.approx(
        (float(interval.low), float(interval.high)), abs=1e-9
    )
    assert body["timeline"]["control"][-1]["revenue"] == pytest.approx(40.0)


async def test_winsorisation_caps_the_whale(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    day = at()
    control = [buys(day, str(10 + n)) for n in range(20)] + [User(day)] * 80
    treatment = [buys(day, str(12 + n)) for n in range(19)] + [buys(day, "5000")] + [User(day)] * 80
    await seed(pool, {"control": control, "treatment": treatment}, name="whale")
    buyers = [10.0 + n for n in range(20)] + [12.0 + n for n in range(19)] + [5000.0]
    cap = round(float(np.percentile(buyers, 95)), 2)  # linear, as percentile_cont
    options = ReportOptions(winsorize=95)
    body = orjson.loads(await run(database_url, "whale", "json", capsys, options))
    assert body["method"]["winsorize_percentile"] == 95
    assert body["method"]["revenue_cap"] == pytest.approx(cap)
    expected = sum(min(v, cap) for v in buyers[20:])
    assert body["variants"][1]["revenue"] == pytest.approx(expected)
    assert body["variants"][0]["revenue"] == pytest.approx(sum(buyers[:20]))  # all under it
    raw = orjson.loads(await run(database_url, "whale", "json", capsys))
    assert raw["variants"][1]["revenue"] == pytest.approx(sum(buyers[20:]))
    assert raw["method"]["revenue_cap"] is None


async def test_users_exposed_to_another_variant_are_counted(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await seed(pool, {"control": [User(at())] * 3, "treatment": [User(at())] * 3}, name="mx")
    async with pool.acquire() as conn:
        variants = {r["name"]: r["id"] for r in await conn.fetch("SELECT name, id FROM variants")}
        experiment = await conn.fetchval("SELECT id FROM experiments WHERE name = 'mx'")
        rows = [
            (ids["control"][0], variants["treatment"], False),  # saw the other variant...
            (ids["control"][0], variants["treatment"], False),  # ...twice: one user
            (ids["treatment"][1], variants["control"], False),
            (ids["treatment"][2], variants["treatment"], True),  # its own variant
        ]
        await conn.executemany(
            "INSERT INTO impressions (user_id, variant_id, experiment_id, user_was_eligible)"
            " VALUES ($1, $2, $3, $4)",
            [(*row[:2], experiment, row[2]) for row in rows],
        )
    body = orjson.loads(await run(database_url, "mx", "json", capsys))
    assert body["multiple_exposure_users"] == 2


async def test_table_and_html_formats(
    pool: asyncpg.Pool, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(pool, main_fixture())
    options = ReportOptions(method="fixed")
    table = await run(database_url, "checkout", "table", capsys, options)
    lines = table.splitlines()
    assert lines[0].startswith("sample ratio check: ok") and lines[1].startswith("winner:")
    control = next(line for line in lines if line.startswith("control"))
    treatment = next(line for line in lines if line.startswith("treatment"))
    assert control.split()[1:5] == ["0.50", "1000", "120", "12.00%"]
    assert "[12.92%, 17.35%]" in treatment
    assert "+3.00 pp" in treatment and "+25.00%" in treatment and "0.0494" in treatment
    html = await run(database_url, "checkout", "html", capsys, options)
    assert html.startswith("<!doctype html>") and '<div id="srm" class="srm ok"' in html
    assert html.count("<svg") == 2 and "<script" not in html and "<link" not in html
    assert "12.00%" in html and "15.00%" in html


async def test_cli_options_reach_the_report(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    await seed(pool, main_fixture())
    env = {"DATABASE_URL": database_url}
    argv = ["experiments", "report", "checkout", "--format", "json", "--method", "fixed",
            "--adjust", "bh", "--winsorize", "99"]  # fmt: skip
    result = await asyncio.to_thread(run_cli, *argv, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    method = orjson.loads(result.stdout)["method"]
    assert (method["kind"], method["adjustment"], method["winsorize_percentile"]) == (
        "fixed",
        "bh",
        99,
    )
    bad = await asyncio.to_thread(
        run_cli, "experiments", "report", "checkout", "--winsorize", "100", cwd=tmp_path, env=env
    )
    assert bad.returncode == 2 and "between 0 and 100" in one_line(bad)


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
