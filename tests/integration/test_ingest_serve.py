"""``ingester serve`` as a real process (graceful SIGTERM) and ``ingester send-sample``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from contract.topics import topic_name
from core.devstack import free_port
from core.errors import CommandError
from core.settings import Settings
from ingester import samples
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h
from tests.support import read_records

SERVE = "import sys; from ingest.serve import run; from core.settings import load; " + (
    "sys.exit(run(load(env_file=None)))"
)


@pytest.fixture
def settings(stack: SessionStack, topic_prefix: str) -> Settings:
    return make_settings(None, stack.bootstrap, topic_prefix)


async def until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.05)


async def test_sigterm_finishes_in_flight_requests_and_exits_0(settings: Settings) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "KAFKA_BOOTSTRAP_SERVERS": settings.require_kafka(),
        "KAFKA_IDEMPOTENT_PRODUCER": "false",
        "TOPIC_PREFIX": settings.topic_prefix,
        "EVENTS_API_KEY": "serve-test-key",
        "PORT": str(port),
        "SHUTDOWN_DEADLINE_S": "10",
        "LOG_LEVEL": "DEBUG",  # accepted requests are logged at DEBUG only
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, env=env, stderr=asyncio.subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=15) as client:

            async def ready() -> bool:
                try:
                    return (await client.get(url + "/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(ready)
            item = h.app_event()
            raw = orjson.dumps({"events": [item]})
            half = len(raw) // 2
            first_half_sent = asyncio.Event()
            release = asyncio.Event()

            async def slow_body() -> AsyncIterator[bytes]:
                yield raw[:half]
                first_half_sent.set()
                await release.wait()
                yield raw[half:]

            in_flight = asyncio.create_task(
                client.post(
                    url + "/events",
                    content=slow_body(),
                    headers={
                        "authorization": "Bearer serve-test-key",
                        "content-length": str(len(raw)),
                    },
                )
            )
            await first_half_sent.wait()
            # A request on another connection is answered only after the server's loop
            # has read what was already sent on the first one.
            assert (await client.get(url + "/healthz")).status_code == 200

            process.send_signal(signal.SIGTERM)

            async def refusing() -> bool:
                try:
                    async with httpx.AsyncClient(timeout=1) as fresh:
                        await fresh.get(url + "/healthz")
                except httpx.TransportError:
                    return True
                return False

            await until(refusing)
            release.set()
            response = await in_flight

        assert response.status_code == 202, response.text
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None
    logs = (await process.stderr.read()).decode()
    [record] = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "experiments"), 1
    )
    assert h.headers_of(record)["ce_id"] == item["id"]
    request_lines = [orjson.loads(line) for line in logs.splitlines() if '"msg":"request"' in line]
    assert [(r["route"], r["status"]) for r in request_lines] == [("/events", 202)]
    assert "serve-test-key" not in logs


@pytest.fixture
async def ingest(settings: Settings) -> AsyncIterator[str]:
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        yield url


SAMPLES = [
    pytest.param("revenuecat", "revenuecat", ["revenuecat.INITIAL_PURCHASE"], id="revenuecat"),
    pytest.param(
        "klaviyo",
        "klaviyo",
        ["klaviyo.event:klaviyo.subscribed_to_email_marketing"],
        id="klaviyo",
    ),
    pytest.param("klaviyo-flow", "klaviyo", ["klaviyo.flow.profile"], id="klaviyo-flow"),
    pytest.param("kit", "kit", ["kit.subscriber.activated"], id="kit"),
    pytest.param("events", "experiments", ["app.impression", "app.conversion"], id="events"),
]


@pytest.mark.parametrize(("provider", "stream", "types"), SAMPLES)
async def test_send_sample(
    ingest: str,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
    provider: str,
    stream: str,
    types: list[str],
) -> None:
    assert await samples.send_sample(settings, provider, ingest) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(("200 ", "202 ")) and "\n" not in out

    records = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, stream), len(types)
    )
    assert sorted(h.headers_of(r)["ce_type"] for r in records) == sorted(types)
    values = [orjson.loads(r.value) for r in records]
    if provider == "revenuecat":
        assert values[0]["app_user_id"] == values[0]["original_app_user_id"] == "u_rc_sample_1"
        assert values[0]["environment"] == "SANDBOX"
        assert values[0]["subscriber_attributes"]["$email"]["value"] == "sample@example.com"
    if provider == "klaviyo-flow":
        assert values[0]["profile"]["external_id"] == "user_sample_1"
        assert values[0]["profile"]["properties"]["environment"] == settings.environment
    if provider == "kit":
        assert values[0]["data"]["subscriber"]["email_address"] == "sample@example.com"
    if provider == "events":
        assert {v["user_id"] for v in values} == {samples.SAMPLE_USER_ID}
        assert {v["experiment"] for v in values} == {"checkout-button"}
        assert {v["variant"] for v in values} <= {"control", "green"}


async def test_send_sample_fresh_ids_each_call(
    ingest: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await samples.send_sample(settings, "kit", ingest) == 0
    assert await samples.send_sample(settings, "kit", ingest) == 0
    records = await read_records(
        settings.require_kafka(), topic_name(settings.topic_prefix, "kit"), 2
    )
    assert len({h.headers_of(r)["ce_id"] for r in records}) == 2


async def test_send_sample_failures(
    ingest: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    unsigned = settings.with_overrides(kit_webhook_secrets=())
    with pytest.raises(CommandError, match="KIT_WEBHOOK_SECRET"):
        await samples.send_sample(unsigned, "kit", ingest)

    with pytest.raises(CommandError, match=r"^cannot reach "):
        await samples.send_sample(settings, "events", f"http://127.0.0.1:{free_port()}")

    wrong = settings.with_overrides(events_api_key="not-the-key")
    assert await samples.send_sample(wrong, "events", ingest) == 1
    assert capsys.readouterr().out.startswith("401 ")
