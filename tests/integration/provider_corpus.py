"""The provider fixture corpus (tests/fixtures/providers/): loading the fixtures and their
expected outcomes, the signed request of each, and the database row each one targets.

Every fixture is the body a provider posts, built from its documentation (SOURCES.md next
to the fixtures). Each names its own person (email, revenue cat id, Klaviyo profile), so
one consumer pass over the whole corpus can tell what each event did to its own row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import yaml

from contract.fields import dig
from contract.topics import SOURCE_KIT, SOURCE_KLAVIYO, SOURCE_REVENUECAT
from core.settings import Settings
from ingest.providers import kit_legacy
from tests.integration import ingest_harness as h

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"
RECEIVED = "2026-01-05T00:00:00.000Z"

# endpoint folder -> the ce_source (and stream) its records carry
SOURCES = {
    "revenuecat": SOURCE_REVENUECAT,
    "kit": SOURCE_KIT,
    "kit_legacy": SOURCE_KIT,
    "klaviyo": SOURCE_KLAVIYO,
    "klaviyo_flow": SOURCE_KLAVIYO,
}


@dataclass(frozen=True, slots=True)
class Fixture:
    path: str  # relative to FIXTURES, e.g. "kit/tag.created.json"
    type: str  # the documented type the outcome table names
    outcome: str  # "applied", "no effect" or "skipped: <reason>"
    raw: bytes

    @property
    def endpoint(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def source(self) -> str:
        return SOURCES[self.endpoint]

    @property
    def body(self) -> dict[str, Any]:
        value = orjson.loads(self.raw)
        assert isinstance(value, dict)
        return value


def load() -> list[Fixture]:
    rows = yaml.safe_load((FIXTURES / "outcomes.yaml").read_text())
    return [
        Fixture(
            row["fixture"], row["type"], row["outcome"], (FIXTURES / row["fixture"]).read_bytes()
        )
        for row in rows
    ]


def fixture_files() -> set[str]:
    return {p.relative_to(FIXTURES).as_posix() for p in FIXTURES.rglob("*.json") if p.is_file()}


def documented_type(fixture: Fixture) -> str:
    """The type as the body itself states it (the legacy event name is in the URL)."""
    body = fixture.body
    match fixture.endpoint:
        case "revenuecat":
            return str(body["event"]["type"])
        case "kit":
            [kind] = {e["type"] for e in body["events"]}  # Kit never mixes types
            return str(kind)
        case "klaviyo":
            [topic] = {e["topic"] for e in body["data"]}
            return str(topic)
        case "klaviyo_flow":
            return "klaviyo.flow.profile"
    return fixture.type  # kit_legacy


def request(settings: Settings, fixture: Fixture) -> h.Request:
    match fixture.endpoint:
        case "revenuecat":
            return h.revenuecat(settings, fixture.raw)
        case "kit":
            return h.kit_request(settings, fixture.raw)
        case "kit_legacy":
            return h.legacy_request(settings, fixture.raw, fixture.type)
        case "klaviyo":
            webhook_id = fixture.body["meta"]["klaviyo_webhook_id"]
            return h.klaviyo_request(settings, fixture.raw, webhook_id=webhook_id)
    return h.flow_request(settings, fixture.raw)


def event_ids(fixture: Fixture) -> list[str]:
    """The ``ce_id`` of each record the fixture must publish."""
    body = fixture.body
    match fixture.endpoint:
        case "revenuecat":
            return [body["event"]["id"]]
        case "kit":
            return [str(e["id"]) for e in body["events"]]
        case "klaviyo":
            return [e["external_id"] for e in body["data"]]
        case "klaviyo_flow":
            return [body["event_id"]]
    [record] = kit_legacy.build_records(fixture.type, body, fixture.raw, RECEIVED)
    return [record.header("ce_id") or ""]


# -- the row each fixture targets --------------------------------------------------------


def revenuecat_ids(event: dict[str, Any]) -> list[str]:
    found = [event.get("app_user_id"), event.get("original_app_user_id")]
    for key in ("aliases", "transferred_from", "transferred_to"):
        found.extend(event.get(key) or [])
    return list(dict.fromkeys(i for i in found if isinstance(i, str) and i))


def kit_emails(fixture: Fixture) -> Iterator[str]:
    body = fixture.body
    datas = [body] if fixture.endpoint == "kit_legacy" else [e["data"] for e in body["events"]]
    for data in datas:
        email = dig(data, "subscriber", "email_address")
        if isinstance(email, str):
            yield email.lower()


async def new_user(pool: asyncpg.Pool, uid: str, email: str) -> int:
    user_id = await pool.fetchval(
        "INSERT INTO users (uid, email) VALUES ($1, $2) RETURNING id", uid, email
    )
    assert isinstance(user_id, int)
    return user_id


async def seed(pool: asyncpg.Pool, fixture: Fixture) -> None:
    """Create the row the fixture's events apply to, so nothing waits for a target."""
    body = fixture.body
    name = fixture.path.removesuffix(".json").replace("/", "_").replace(".", "_")
    match fixture.endpoint:
        case "revenuecat":
            rc_id = revenuecat_ids(body["event"])[0]
            user_id = await new_user(pool, f"u_{name}", f"{name}@corpus.example.com")
            await pool.execute(
                "INSERT INTO user_revenue_cat_ids (uid, user_id, revenue_cat_id,"
                " revenue_cat_attributes, created_at, checked_at) VALUES ($1, $2, $3, '{}', 0, 0)",
                f"iurc_{name}",
                user_id,
                rc_id,
            )
        case "kit" | "kit_legacy":
            for email in kit_emails(fixture):
                await pool.execute("INSERT INTO user_profiles (email) VALUES ($1)", email)
        case "klaviyo":
            for element in body["data"]:
                profile = element["payload"]["data"]["relationships"]["profile"]["data"]["id"]
                user_id = await new_user(pool, f"u_{name}", f"{name}@corpus.example.com")
                await pool.execute(
                    "INSERT INTO user_klaviyo_profiles (uid, klaviyo_id, user_id, email,"
                    " timezone, environment, created_at, updated_at)"
                    " VALUES ($1, $2, $3, $4, 'UTC', 'production', 0, 0)",
                    f"ukp_{name}",
                    profile,
                    user_id,
                    f"{name}@corpus.example.com",
                )
        case "klaviyo_flow":
            await new_user(pool, body["profile"]["external_id"], body["profile"]["email"])


async def state(pool: asyncpg.Pool, fixture: Fixture) -> list[tuple[Any, ...]]:
    """Everything of the fixture's target its events could change."""
    body = fixture.body
    match fixture.endpoint:
        case "revenuecat":
            rows = await pool.fetch(
                "SELECT revenue_cat_id, revenue_cat_attributes, checked_at"
                " FROM user_revenue_cat_ids WHERE revenue_cat_id = ANY($1::text[]) ORDER BY 1",
                revenuecat_ids(body["event"]),
            )
        case "kit" | "kit_legacy":
            rows = await pool.fetch(
                "SELECT email, kit_subscriber_id, kit_state, updated_at FROM user_profiles"
                " WHERE lower(email) = ANY($1::text[]) ORDER BY 1",
                list(kit_emails(fixture)),
            )
        case "klaviyo":
            rows = await pool.fetch(
                "SELECT p.klaviyo_id, p.email, p.environment, p.updated_at, s.channel,"
                " s.enabled FROM user_klaviyo_profiles AS p"
                " LEFT JOIN user_notification_settings AS s ON s.user_id = p.user_id"
                " WHERE p.klaviyo_id = ANY($1::text[]) ORDER BY 1, 5",
                [
                    e["payload"]["data"]["relationships"]["profile"]["data"]["id"]
                    for e in body["data"]
                ],
            )
        case _:
            rows = await pool.fetch(
                "SELECT p.klaviyo_id, p.email, p.timezone, p.environment, p.updated_at"
                " FROM user_klaviyo_profiles AS p JOIN users AS u ON u.id = p.user_id"
                " WHERE u.uid = $1",
                body["profile"]["external_id"],
            )
    return [tuple(r) for r in rows]
