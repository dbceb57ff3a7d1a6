"""The HTML report opened in a real browser (the system's Chromium, headless): the SRM verdict
is the first thing on the page and the lift chart draws a line and a band per treatment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from playwright.async_api import Browser, Page

from core.settings import Settings
from ingester.report import report
from ingester.report.model import ReportOptions
from tests.integration.chromium import chromium, needs_chromium
from tests.integration.experiments_helpers import at
from tests.integration.test_experiments_report import User, buys, seed

pytestmark = needs_chromium


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def users(exposed: int, converted: int) -> list[User]:
    return [
        buys(at(days=n % 14), "10") if n < converted else User(at(days=n % 14))
        for n in range(exposed)
    ]


async def open_report(
    browser: Browser, database_url: str, name: str, capsys: pytest.CaptureFixture[str]
) -> Page:
    options = ReportOptions(method="sequential")
    assert await report(Settings(database_url=database_url), name, "html", options) == 0
    page = await browser.new_page()
    await page.set_content(capsys.readouterr().out)
    return page


async def test_report_shows_the_srm_verdict_first_and_the_lift_chart(
    pool: asyncpg.Pool, database_url: str, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = {"control": users(1400, 140), "b": users(1400, 190), "c": users(1400, 150)}
    await seed(pool, fixture, target_sample_size=1400)
    page = await open_report(browser, database_url, "checkout", capsys)

    first = page.locator("body > *").first
    assert await first.get_attribute("id") == "srm"
    assert await first.get_attribute("class") == "srm ok"
    assert (await first.inner_text()).startswith("sample ratio check: ok")
    assert await first.is_visible()

    chart = page.locator("svg.lift-chart")
    assert await chart.count() == 1 and await page.locator("svg.bars").count() == 1
    lines = chart.locator("path.lift")
    bands = chart.locator("path.band")
    assert [await lines.nth(i).get_attribute("data-variant") for i in range(2)] == ["b", "c"]
    assert await lines.count() == 2 and await bands.count() == 2
    for path in (lines.nth(0), lines.nth(1), bands.nth(0), bands.nth(1)):
        box = await path.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 1
    # the band of b's sequence contains its line: drawn around it, not beside it
    band, line = await bands.nth(0).bounding_box(), await lines.nth(0).bounding_box()
    assert band is not None and line is not None
    assert band["y"] <= line["y"] and band["y"] + band["height"] >= line["y"] + line["height"]
    assert await chart.locator("line.zero").count() == 1
    charts = await page.locator("div.charts > svg").all()
    assert len(charts) == 2  # next to the bars
    await page.close()


async def test_a_flagged_srm_is_shown_first_with_no_winner(
    pool: asyncpg.Pool, database_url: str, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    await seed(pool, {"control": users(1300, 100), "treatment": users(1000, 200)})
    page = await open_report(browser, database_url, "checkout", capsys)

    srm = page.locator("#srm")
    assert await srm.get_attribute("class") == "srm flagged"
    assert (await srm.inner_text()).startswith("SAMPLE RATIO MISMATCH")
    assert await page.locator("body > *").first.get_attribute("id") == "srm"
    verdict = await page.locator("#verdict").inner_text()
    assert verdict.startswith("no winner: the sample ratio mismatch")
    await page.close()
