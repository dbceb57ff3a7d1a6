"""The operator console in a real browser (the system's Chromium, headless) against the real
database and broker, with a consumer applying the topics meanwhile: refused without the
token, logged in through the form, each page opened, an event looked up by id, a dead letter
replayed (after its cause was fixed) and seen applied, a parked event retried.

``pytest tests/integration/test_console_browser.py --screenshots docs/console`` also saves a
screenshot of each page (docs/console.md shows them)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Page

from consumers.dlq import DeadLetterSink
from consumers.registry import build_handlers, topics_for
from consumers.service import build_runner
from contract.records import Record
from core.kafka import make_consumer, make_producer
from core.settings import Settings
from ingest.providers import kit
from tests.integration.chromium import chromium, needs_chromium
from tests.integration.console_harness import TOKEN, serving_console
from tests.integration.experiments_helpers import create_experiment, create_profile, item, records
from tests.support import publish

pytestmark = needs_chromium

EMAIL = "ann.lee@example.com"
POISON_SUBSCRIBER = 424242
# A trigger standing in for a bug the database refuses (SQLSTATE P0001: poison), fixed later.
BUG = """
CREATE FUNCTION refuse_subscriber() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kit_subscriber_id = '424242' THEN RAISE EXCEPTION 'subscriber 424242 refused'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_subscriber BEFORE UPDATE ON user_profiles
    FOR EACH ROW EXECUTE FUNCTION refuse_subscriber();
"""
FIX = "DROP TRIGGER refuse_subscriber ON user_profiles"
PAGES = ["/", "/parked", "/dead-letters", "/lookup", "/experiments", "/replay"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def consuming(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """A consumer applying every topic while the test runs."""
    handlers = build_handlers(())
    consumer = make_consumer(settings, *topics_for(settings.topic_prefix, handlers))
    producer = make_producer(settings)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    runner = build_runner(
        settings, handlers, pool, consumer, DeadLetterSink.from_settings(settings, producer)
    )
    task = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await consumer.stop()
        await producer.stop()


async def until(check: Callable[[], Awaitable[object]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def kit_event(subscriber: int) -> tuple[str, list[Record]]:
    event_id = f"kit-{uuid.uuid4().hex[:12]}"
    body = {
        "delivery_id": 1,
        "events": [
            {
                "id": event_id,
                "type": "subscriber.activated",
                "created": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                "data": {"subscriber": {"id": subscriber, "email_address": EMAIL}},
            }
        ],
    }
    return event_id, list(kit.build_records(body, datetime.now(UTC).isoformat()))


async def traffic(settings: Settings, pool: asyncpg.Pool, user: uuid.UUID) -> None:
    """A few seconds of impressions, so that the overview's charts have something to draw."""
    assert settings.kafka_bootstrap_servers is not None
    for burst in range(8):
        moment = datetime.now(UTC) - timedelta(minutes=30 - burst)
        batch = [item("impression", user, moment) for _ in range(5 * (1 + burst % 3))]
        await publish(settings.kafka_bootstrap_servers, settings.topic_prefix, records(batch))
        await asyncio.sleep(0.4)
    await asyncio.sleep(1.0)  # a sample or two after the last burst


class Shots:
    """Screenshots of the pages, when ``--screenshots DIR`` asks for them."""

    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None

    async def take(self, page: Page, name: str) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


async def test_the_console_in_a_browser(
    settings: Settings,
    pool: asyncpg.Pool,
    consuming: None,
    browser: Browser,
    request: pytest.FixtureRequest,
) -> None:
    shots = Shots(request.config.getoption("--screenshots"))
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap is not None
    user = await create_profile(pool, EMAIL)
    await create_experiment(pool, "checkout", status="active")
    await pool.execute(BUG)
    dead_id, dead_records = kit_event(POISON_SUBSCRIBER)
    parked = item("impression", user, datetime.now(UTC), experiment="launch", variant="a")
    seen = [item("impression", user, datetime.now(UTC) - timedelta(hours=1))]
    await publish(bootstrap, settings.topic_prefix, [*dead_records, *records([parked, *seen])])

    async def settled() -> object:
        return await pool.fetchval(
            "SELECT (SELECT count(*) FROM ingest_dead_letters WHERE event_id = $1)"
            " + (SELECT count(*) FROM ingest_pending WHERE event_id = $2)"
            " + (SELECT count(*) FROM ingest_inbox WHERE event_id = $3) = 3",
            dead_id,
            parked["id"],
            seen[0]["id"],
        )

    await until(settled, "the consumer to dead-letter, park and apply")
    await pool.execute(FIX)

    async with serving_console(settings, sample_s=0.5) as base:
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        for path in PAGES:
            answer = await page.goto(base + path)
            assert answer is not None and answer.status == 401, path
            assert await page.locator('form[action="/login"]').is_visible()
        await page.goto(base + "/")  # the login form brings you back where you were
        await shots.take(page, "login")

        await page.fill('input[name="token"]', "not the token")
        await page.click('button[type="submit"]')
        assert await page.locator("text=wrong token").is_visible()
        await page.fill('input[name="token"]', TOKEN)
        await page.fill('input[name="name"]', "ann")
        await page.click('button[type="submit"]')
        await page.wait_for_url(base + "/")
        await traffic(settings, pool, user)
        await page.goto(base + "/")
        assert await page.locator('[data-ready="database"]').inner_text() == "ready"
        assert await page.locator('[data-ready="broker"]').inner_text() == "ready"
        assert await page.locator("table#lag tr").count() > 1
        assert await page.locator("svg.chart.lag").count() == 1
        await shots.take(page, "overview")

        # Parked: the impression for an experiment nobody created; created now, retried.
        await page.goto(base + "/parked")
        assert "unknown experiment" in await page.locator("table#groups").inner_text()
        await page.click("table#groups a:text('newest')")
        row = page.locator(f"table#events tr:has-text('{parked['id']}')")
        assert await row.count() == 1
        await shots.take(page, "parked")
        await create_experiment(pool, "launch", variants=("a", "b"), status="active")
        await row.locator("button:text('retry now')").click()
        assert "applied 1" in await page.locator(".notice").inner_text()
        assert await pool.fetchval("SELECT count(*) FROM ingest_pending") == 0

        # Dead letters: the refused Kit event; its cause is fixed, so a replay applies it.
        await page.goto(base + "/dead-letters")
        letter = page.locator(f"table#dead-letters tr:has-text('{dead_id}')")
        assert await letter.count() == 1
        assert "subscriber 424242 refused" in await letter.inner_text()
        assert EMAIL not in await page.content()  # masked in the payload preview
        await shots.take(page, "dead-letters")
        await letter.locator("button:text('replay')").click()
        assert "replayed" in await page.locator(".notice").inner_text()

        async def applied() -> object:
            return await pool.fetchval(
                "SELECT kit_subscriber_id = '424242' FROM user_profiles WHERE id = $1", user
            )

        await until(applied, "the replayed dead letter to be applied")

        # Lookup by id: applied now, dead-lettered before, and the record as published.
        await page.goto(base + "/lookup")
        await page.fill('input[name="q"]', dead_id)
        await page.click("form#lookup button")
        assert await page.locator("#state-1").inner_text() == "applied"
        history = await page.locator(".event table").inner_text()
        assert "dead-lettered" in history and "subscriber 424242 refused" in history
        published = await page.locator("pre.value").inner_text()
        assert str(POISON_SUBSCRIBER) in published and EMAIL not in published
        await shots.take(page, "lookup")
        await page.click("text=show personal data")
        assert EMAIL in await page.locator("pre.value").inner_text()
        # By user key: the profile id finds the Kit event too (keyed by the person's email).
        await page.goto(base + f"/lookup?by=user&q={user}")
        found = await page.locator(".event h2").all_inner_texts()
        assert any(dead_id in f for f in found) and any(parked["id"] in f for f in found)

        await page.goto(base + "/experiments")
        assert await page.locator("table#experiments a:text('checkout')").count() == 1
        await shots.take(page, "experiments")
        await page.click("table#experiments a:text('checkout')")
        assert await page.locator("#srm").is_visible()

        await page.goto(base + "/replay")
        since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await page.select_option('select[name="source"]', "kit")
        await page.fill('input[name="since"]', since)
        await page.click("form#replay-form button")
        for _ in range(100):
            if "done" in await page.locator("#replay-run").inner_text():
                break
            await asyncio.sleep(0.1)
            await page.goto(base + "/replay")
        # the Kit topic holds the event twice: as first published, and as replayed
        assert "already applied 2" in await page.locator("#replay-run").inner_text()
        await shots.take(page, "replay")

        phone = await browser.new_page(viewport={"width": 390, "height": 844})
        session = await page.context.cookies()
        await phone.context.add_cookies(
            [{"name": c["name"], "value": c["value"], "url": base} for c in session]
        )
        await phone.goto(base + "/")
        assert await phone.locator('[data-ready="database"]').is_visible()
        await shots.take(phone, "overview-phone")
