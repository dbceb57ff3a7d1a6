"""The operator console over HTTP, against the real database and broker: every page needs the
token, the login cookie is HttpOnly and SameSite=Strict and dies with the token, changes are
POSTs with a CSRF token and leave an audit line, a server that fails is a 503, and the
console refuses to start without a token."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from core.settings import Settings
from ingester.cli import main
from tests.integration.console_harness import TOKEN, serving_console

PAGES = ["/", "/parked", "/dead-letters", "/lookup?q=x", "/experiments", "/experiments/x"]
PAGES += ["/replay", "/parked?reason=r&source=kit"]
CHANGES = ["/parked/retry", "/dead-letters/replay", "/dead-letters/replay-matching"]
CHANGES += ["/replay", "/logout"]
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page has no CSRF token"
    return found[1]


async def test_every_page_and_change_needs_the_token(settings: Settings) -> None:
    async with serving_console(settings) as base, httpx.AsyncClient(base_url=base) as client:
        for credentials in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Cookie": "console_session=a.b.c"},
        ):
            for path in PAGES:
                answer = await client.get(path, headers=credentials)
                assert answer.status_code == 401, (path, credentials)
                assert 'action="/login"' in answer.text
            for path in CHANGES:
                answer = await client.post(path, headers=credentials, data={"csrf": "x"})
                assert answer.status_code == 401, (path, credentials)
        for path in PAGES:
            assert (await client.get(path, headers=BEARER)).status_code in (200, 404), path
        # The probes are open and say nothing of the data.
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready == {"status": "ready", "database": True, "broker": True}


async def test_the_login_cookie_is_http_only_strict_and_dies_with_the_token(
    settings: Settings,
) -> None:
    async with serving_console(settings) as base, httpx.AsyncClient(base_url=base) as client:
        wrong = await client.post("/login", data={"token": "nope", "next": "/parked"})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        login = await client.post("/login", data={"token": TOKEN, "name": "ann", "next": "/parked"})
        assert login.status_code == 303 and login.headers["location"] == "/parked"
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = await client.get("/parked")
        assert page.status_code == 200 and ">ann<" in page.text
        session = client.cookies["console_session"]
        assert TOKEN not in session
        # A login never sends anyone off the console.
        away = await client.post("/login", data={"token": TOKEN, "next": "//evil.example"})
        assert away.headers["location"] == "/"
    jar = {"console_session": session}
    async with (
        serving_console(settings, token="another-token") as base,
        httpx.AsyncClient(base_url=base, cookies=jar) as client,
    ):
        assert (await client.get("/parked")).status_code == 401


async def test_changes_are_posts_with_a_csrf_token_and_are_audited(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving_console(settings) as base, httpx.AsyncClient(base_url=base) as client:
        await client.post("/login", data={"token": TOKEN, "name": "bob"})
        csrf = csrf_of((await client.get("/parked")).text)

        assert (await client.get("/parked/retry")).status_code == 405
        forged = await client.post("/parked/retry", data={"scope": "all", "csrf": "0" * 32})
        assert forged.status_code == 403
        not_a_form = await client.post("/parked/retry", json={"scope": "all", "csrf": csrf})
        assert not_a_form.status_code == 400
        with caplog.at_level(logging.INFO, logger="ingester.console.audit"):
            done = await client.post(
                "/parked/retry", data={"scope": "all", "csrf": csrf, "back": "/parked"}
            )
            assert done.status_code == 303
            assert done.headers["location"].startswith("/parked?notice=retried+0")
            shown = await client.get("/dead-letters?pii=1")
            assert shown.status_code == 200 and "hide personal data" in shown.text
    lines = [r for r in caplog.records if r.name == "ingester.console.audit"]
    actions = [(r.what, r.scope, r.count) for r in lines]  # type: ignore[attr-defined]
    assert ("retry parked", "all", 0) in actions
    assert ("show personal data", "dead letters", 0) in actions
    assert all(r.who.startswith("bob (127.0.0.1)") for r in lines)  # type: ignore[attr-defined]


async def test_a_database_that_fails_is_a_503_not_a_500(settings: Settings) -> None:
    down = settings.with_overrides(database_url="postgresql://postgres@127.0.0.1:9/none")
    async with (
        serving_console(down) as base,
        httpx.AsyncClient(base_url=base, headers=BEARER) as client,
    ):
        parked = await client.get("/parked")
        assert parked.status_code == 503 and "unavailable" in parked.text
        overview = await client.get("/")
        assert overview.status_code == 200
        assert 'data-ready="database">unavailable' in overview.text
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] is False


def test_the_console_refuses_to_start_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONSOLE_TOKEN", "")  # empty is unset, and wins over .dev/stack.env
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")

    assert main(["console"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "ingester console: CONSOLE_TOKEN is not set: the console refuses to start without it\n"
    )
