"""Helpers of the rc-sync tests: the RevenueCat stand-in on loopback, customers in the
database, RevenueCat records on the topic, rc-sync running in this process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from consumers.handlers.attributes import parse_stored
from contract.records import Record, cloudevent, rfc3339
from contract.topics import SOURCE_REVENUECAT
from core.settings import Settings
from rcsync.service import run_rc_sync
from rcsync.standin import RevenueCatStandIn, StandInServer

API_KEY = "test-revenuecat-api-key"
FAST_GROUP = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200, "rebalance_timeout_ms": 500}
OLD_MS = 1_700_000_000_000


def entry(value: str, at: float = OLD_MS) -> dict[str, Any]:
    return {"value": value, "updated_at_ms": at}


@dataclass(frozen=True, slots=True)
class Person:
    """A user with one RevenueCat id; ``known`` is revenue_cat_attributes."""

    revenue_cat_id: str
    email: str
    known: dict[str, Any] = field(default_factory=dict)
    first_name: str | None = None  # user_profiles.first_name (same email)

    def in_sync(self, environment: str = "dev") -> Person:
        """This person with RevenueCat already holding our values."""
        known = {"$email": entry(self.email), "environment": entry(environment)}
        if self.first_name:
            known["$displayName"] = entry(self.first_name)
        return Person(self.revenue_cat_id, self.email, known, self.first_name)


async def add_people(pool: asyncpg.Pool, people: Sequence[Person]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            WITH u AS (
                INSERT INTO users (uid, email)
                SELECT 'user_' || rc, email FROM unnest($1::text[], $2::text[]) AS p(rc, email)
                RETURNING id, uid
            )
            INSERT INTO user_revenue_cat_ids
                (uid, user_id, revenue_cat_id, revenue_cat_attributes, created_at, checked_at)
            SELECT 'iurc_' || p.rc, u.id, p.rc, p.known, 0, 0
            FROM unnest($1::text[], $3::text[]) AS p(rc, known)
            JOIN u ON u.uid = 'user_' || p.rc
            """,
            [p.revenue_cat_id for p in people],
            [p.email for p in people],
            [orjson.dumps(p.known).decode() for p in people],
        )
        await conn.executemany(
            "INSERT INTO user_profiles (email, first_name) VALUES ($1, $2)",
            [(p.email, p.first_name) for p in people if p.first_name],
        )


async def known(pool: asyncpg.Pool, revenue_cat_id: str) -> dict[str, Any]:
    text = await pool.fetchval(
        "SELECT revenue_cat_attributes FROM user_revenue_cat_ids WHERE revenue_cat_id = $1",
        revenue_cat_id,
    )
    return parse_stored(text)


def rc_event(
    revenue_cat_id: str,
    reported: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    event_id: str | None = None,
) -> Record:
    """A RevenueCat record as ingest publishes it; ``key`` puts events on one partition."""
    now = datetime.now(UTC)
    event_id = event_id or str(uuid.uuid4())
    event = {
        "id": event_id,
        "type": "RENEWAL",
        "app_user_id": revenue_cat_id,
        "original_app_user_id": revenue_cat_id,
        "aliases": [revenue_cat_id],
        "environment": "SANDBOX",
        "event_timestamp_ms": int(now.timestamp() * 1000),
        "subscriber_attributes": reported or {},
    }
    return cloudevent(
        source=SOURCE_REVENUECAT,
        event_id=event_id,
        event_type="revenuecat.RENEWAL",
        time=rfc3339(now),
        partition_key=key or revenue_cat_id,
        value=orjson.dumps(event),
        received_at=rfc3339(now),
    )


@asynccontextmanager
async def standin_server() -> AsyncIterator[StandInServer]:
    server = StandInServer(RevenueCatStandIn(API_KEY))
    await server.start()
    try:
        yield server
    finally:
        server.standin.release()
        await server.stop()


def rc_settings(settings: Settings, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "revenuecat_api_key": API_KEY,
        "revenuecat_api_url": url,
        "rc_sync_group": f"rc-sync-{settings.topic_prefix.rstrip('.')}",
        "rc_sync_metrics_port": 0,
        "rc_sync_sweep_interval_s": 0.0,
        "rc_sync_max_rps": 100.0,
    }
    return settings.with_overrides(**{**values, **overrides})


@asynccontextmanager
async def rc_sync_running(settings: Settings) -> AsyncIterator[asyncio.Task[int]]:
    """rc-sync in this process until the block ends; it must then stop cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_rc_sync(settings, stop=stop, consumer_options=FAST_GROUP))
    try:
        yield task
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


async def eventually(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while not (found := await check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found
