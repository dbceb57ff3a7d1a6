"""Every documented event type of RevenueCat, Kit and Klaviyo (the corpus in
tests/fixtures/providers/) through the real HTTP server, broker and database: each fixture is
accepted and published, and one consumer pass settles each event as its row of outcomes.yaml
says (docs/contract.md §6): applied, applied with no effect, or skipped with a reason; never
dead-lettered, never left waiting for a target that exists."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from consumers.apply import Disposition, Settled, apply_in_transaction
from consumers.decode import RawRecord, decode
from consumers.registry import build_handlers
from consumers.types import Context, Event
from contract.topics import STREAM_OF_SOURCE, topic_name
from core.settings import Settings
from tests.integration import ingest_harness as h
from tests.integration import provider_corpus as corpus
from tests.support import PENDING, read_records

FIXTURES = corpus.load()
# The fixtures are production events (RevenueCat's samples are PRODUCTION).
CONTEXT_ENVIRONMENT = "production"


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[str]:
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        yield url


def test_every_fixture_is_in_the_outcome_table_once_with_its_own_type() -> None:
    paths = [f.path for f in FIXTURES]
    assert len(paths) == len(set(paths))
    assert set(paths) == corpus.fixture_files()
    assert {f.path: corpus.documented_type(f) for f in FIXTURES} == {
        f.path: f.type for f in FIXTURES
    }
    assert all(
        f.outcome in ("applied", "no effect") or f.outcome.startswith("skipped: ") for f in FIXTURES
    )


def outcome(settled: Settled, before: object, after: object) -> str:
    match settled.disposition:
        case Disposition.APPLIED:
            return "applied" if after != before else "no effect"
        case Disposition.SKIPPED:
            return f"skipped: {settled.reason}"
    return f"{settled.disposition.value}: {settled.reason}"


async def published(settings: Settings) -> list[Event]:
    """Every record the corpus put on the provider topics, decoded as the consumers do."""
    counts = Counter(f.source for f in FIXTURES for _ in corpus.event_ids(f))
    events = []
    for source, count in counts.items():
        topic = topic_name(settings.topic_prefix, STREAM_OF_SOURCE[source])
        for r in await read_records(settings.require_kafka(), topic, count):
            raw = RawRecord(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
            events.append(decode(raw))
    return events


async def test_every_documented_event_is_accepted_published_and_settled(
    ingest: str, settings: Settings, pool: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(corpus.request(settings, f).post(client, ingest) for f in FIXTURES)
        )
    answers = {f.path: (r.status_code, r.json()) for f, r in zip(FIXTURES, responses, strict=True)}
    assert answers == {
        f.path: (200, {"status": "accepted", "records": len(corpus.event_ids(f))}) for f in FIXTURES
    }

    events = await published(settings)
    owner = {(f.source, i): f for f in FIXTURES for i in corpus.event_ids(f)}
    assert sorted((e.source, e.id) for e in events) == sorted(owner)

    for f in FIXTURES:
        await corpus.seed(pool, f)
    before = {f.path: await corpus.state(pool, f) for f in FIXTURES}
    report = await apply_in_transaction(
        pool,
        build_handlers(()),
        events,
        Context(environment=CONTEXT_ENVIRONMENT, now=datetime.now(UTC)),
        backoff_max_s=PENDING.backoff_max_s,
    )
    after = {f.path: await corpus.state(pool, f) for f in FIXTURES}

    found = {
        owner[(s.event.source, s.event.id)].path: outcome(
            s,
            before[owner[(s.event.source, s.event.id)].path],
            after[owner[(s.event.source, s.event.id)].path],
        )
        for s in report.settled
    }
    assert found == {f.path: f.outcome for f in FIXTURES}
    parked = {(r["source"], r["event_id"]) for r in await pool.fetch(PARKED)}
    assert parked & set(owner) == set()


PARKED = "SELECT source, event_id FROM ingest_pending"
