"""Admission per endpoint on the wire: slow unauthenticated uploads to one endpoint do not
refuse service on another (README, "Limits and the order of checks").

Kit requests pass the checks before the body with a present, fresh but unverified signature
header, so anyone can open them and trickle their bodies. Here 256 of them are in flight at
once -- as many as the whole process admits -- and RevenueCat and ``/events`` still answer
2xx, because Kit is held to its share of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import httpx
import orjson

from core.settings import Settings
from core.topics import create_topics
from ingest.limits import Admission
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h

SLOW_UPLOADS = 256
WAIT_S = 20.0


def _kit_head(host: str, declared: int) -> bytes:
    signature = f"t={int(time.time())},v1={'0' * 64}"  # well formed, fresh, never checked
    lines = [
        "POST /webhooks/kit HTTP/1.1",
        f"host: {host}",
        "content-type: application/json",
        f"content-length: {declared}",
        f"x-kit-signature: {signature}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _until(admission: Admission, requests: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while admission.requests < requests:
            await asyncio.sleep(0.01)


async def test_slow_unsigned_kit_uploads_leave_room_for_revenuecat_and_events(
    stack: SessionStack,
) -> None:
    settings: Settings = make_settings(None, stack.bootstrap, f"adm{uuid.uuid4().hex[:8]}.")
    assert settings.max_concurrent_requests == SLOW_UPLOADS
    await create_topics(settings)
    writers: list[asyncio.StreamWriter] = []
    async with (
        h.kafka_publisher(settings) as publisher,
        h.serving_server(settings, publisher) as (url, server),
    ):
        runtime = server.app.state.runtime
        kit = runtime.admissions["kit"]
        host = url.removeprefix("http://")
        address, port = host.split(":")
        try:
            for _ in range(SLOW_UPLOADS):
                _, writer = await asyncio.open_connection(address, int(port))
                writer.write(_kit_head(host, 1000) + b'{"events": [')  # and no more
                writers.append(writer)
            await _until(kit, kit.max_requests)
            assert kit.max_requests < SLOW_UPLOADS

            async with httpx.AsyncClient() as client:
                rc = await h.revenuecat(settings, {"event": h.revenuecat_event()}).post(client, url)
                events = await h.events_request(
                    settings, orjson.dumps({"events": [h.app_event()]})
                ).post(client, url)

            assert (rc.status_code, events.status_code) == (200, 202)
            assert kit.requests == kit.max_requests  # the slow uploads were still in flight
            assert runtime.admission.requests == kit.max_requests
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
