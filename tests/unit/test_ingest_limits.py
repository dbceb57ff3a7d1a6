"""The order of checks and the process limits, in process (no broker).

Bodies are async generators that count what the app pulls, so "refused without reading the
body" is observed rather than assumed. Without a lifespan no publisher exists: a request
that passes every check ends in 503 ``unavailable``, distinct from ``overloaded``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from core.settings import ConfigError, Settings, from_mapping
from ingest.app import create_app
from ingest.errors import Overloaded
from ingest.limits import Admission, EndpointLimits, effective
from ingest.registry import ENDPOINTS
from ingest.verify import sign_timestamped
from tests.support import CONFIGURED

MiB = 1024 * 1024
SETTINGS = CONFIGURED.with_overrides(max_body_bytes=5 * MiB)
NOW = time.time()
STALE = int(NOW) - 3600
# Signed when the test runs, not at import: a long suite would make them stale.
FRESH = {"rc": ("rc-hmac",), "kit": ("kit",)}


@dataclass
class Upload:
    """A request body of ``chunks`` x 64 KiB that counts the chunks the server pulled and
    can stall after ``stall_after`` chunks until ``release`` is set."""

    chunks: int = 80  # 5 MiB
    stall_after: int | None = None
    pulled: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def size(self) -> int:
        return self.chunks * 64 * 1024

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.chunks):
            if index == self.stall_after:
                self.started.set()
                await self.release.wait()
            self.pulled += 1
            yield b" " * (64 * 1024)


def client_for(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://ingest")


async def post(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], upload: Upload
) -> httpx.Response:
    headers = {**headers, "content-length": str(upload.size)}
    return await client.post(path, content=upload, headers=headers)


KLAVIYO = {"klaviyo-webhook-id": "wh", "klaviyo-signature": "0" * 64}
REFUSED_BEFORE_THE_BODY = [
    pytest.param(
        SETTINGS.with_overrides(revenuecat_authorization=None),
        "/webhooks/revenuecat",
        {"authorization": "Bearer rc"},
        404,
        "not_found",
        id="unconfigured endpoint",
    ),
    pytest.param(
        SETTINGS,
        "/webhooks/revenuecat",
        {"authorization": "Bearer x"},
        401,
        "unauthorized",
        id="revenuecat wrong Authorization",
    ),
    pytest.param(
        SETTINGS,
        "/webhooks/revenuecat",
        {"authorization": "Bearer rc"},
        401,
        "unauthorized",
        id="revenuecat no signature header",
    ),
    pytest.param(
        SETTINGS,
        "/webhooks/revenuecat",
        {
            "authorization": "Bearer rc",
            "x-revenuecat-webhook-signature": sign_timestamped(("rc-hmac",), STALE, b""),
        },
        401,
        "unauthorized",
        id="revenuecat stale signature",
    ),
    pytest.param(
        SETTINGS,
        "/events",
        {"authorization": "Bearer nope"},
        401,
        "unauthorized",
        id="events wrong key",
    ),
    pytest.param(
        SETTINGS, "/webhooks/klaviyo/flow/guess", {}, 401, "unauthorized", id="flow wrong token"
    ),
    pytest.param(
        SETTINGS,
        "/webhooks/kit/legacy/guess/subscriber.subscriber_activate",
        {},
        401,
        "unauthorized",
        id="legacy Kit wrong token",
    ),
    pytest.param(SETTINGS, "/webhooks/kit", {}, 401, "unauthorized", id="kit no signature"),
    pytest.param(
        SETTINGS,
        "/webhooks/kit",
        {"x-kit-signature": sign_timestamped(("kit",), STALE, b"")},
        401,
        "unauthorized",
        id="kit stale signature",
    ),
    pytest.param(
        SETTINGS, "/webhooks/klaviyo", KLAVIYO, 401, "unauthorized", id="klaviyo no timestamp"
    ),
    pytest.param(
        SETTINGS,
        "/webhooks/klaviyo",
        {**KLAVIYO, "klaviyo-timestamp": formatdate(STALE, usegmt=True)},
        401,
        "unauthorized",
        id="klaviyo stale timestamp",
    ),
    pytest.param(
        SETTINGS.with_overrides(max_body_bytes=MiB),
        "/events",
        {"authorization": "Bearer ev"},
        413,
        "payload_too_large",
        id="declared length over MAX_BODY_BYTES",
    ),
    pytest.param(
        SETTINGS.with_overrides(max_inflight_bytes=MiB),
        "/events",
        {"authorization": "Bearer ev"},
        503,
        "overloaded",
        id="declared length over the in-flight budget",
    ),
]


@pytest.mark.parametrize(("settings", "path", "headers", "status", "code"), REFUSED_BEFORE_THE_BODY)
async def test_refused_before_the_body_is_read(
    settings: Settings, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    upload = Upload()
    async with client_for(settings) as client:
        response = await post(client, path, headers, upload)

    assert (response.status_code, response.json()["error"]) == (status, code)
    assert upload.pulled == 0
    assert response.headers["connection"] == "close"
    if status == 503:
        assert response.headers["retry-after"] == "5"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param(
            "/webhooks/revenuecat",
            {"authorization": "Bearer rc", "x-revenuecat-webhook-signature": "rc"},
            id="revenuecat",
        ),
        pytest.param("/webhooks/kit", {"x-kit-signature": "kit"}, id="kit"),
        pytest.param("/events", {"authorization": "Bearer ev"}, id="events"),
    ],
)
async def test_good_credentials_read_the_body(path: str, headers: dict[str, str]) -> None:
    """The other side of the table above: the same request with valid pre-body credentials
    is read whole and then refused for its body (the signature, or not JSON)."""
    headers = {
        name: sign_timestamped(FRESH[value], int(time.time()), b"{}") if value in FRESH else value
        for name, value in headers.items()
    }
    upload = Upload(chunks=2)
    async with client_for(SETTINGS) as client:
        response = await post(client, path, headers, upload)

    assert response.status_code in (400, 401)
    assert upload.pulled == 2
    assert "connection" not in response.headers


@dataclass
class Held:
    """A first request admitted and stalled inside its body."""

    client: httpx.AsyncClient
    upload: Upload
    task: asyncio.Task[httpx.Response]
    admission: Admission

    async def finish(self) -> httpx.Response:
        self.upload.release.set()
        return await self.task


@asynccontextmanager
async def hold(settings: Settings, upload: Upload, *, chunked: bool = False) -> AsyncIterator[Held]:
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest"
    ) as client:
        headers = {"authorization": "Bearer ev"}
        if not chunked:
            headers["content-length"] = str(upload.size)
        task = asyncio.create_task(client.post("/events", content=upload, headers=headers))
        await upload.started.wait()
        held = Held(client, upload, task, app.state.runtime.admission)
        try:
            yield held
        finally:
            await held.finish()


@pytest.mark.parametrize(
    ("settings", "second_size"),
    [
        pytest.param(
            SETTINGS.with_overrides(max_concurrent_requests=1), 10, id="MAX_CONCURRENT_REQUESTS"
        ),
        pytest.param(
            SETTINGS.with_overrides(max_inflight_bytes=5 * MiB + 100 * 1024),
            200 * 1024,
            id="MAX_INFLIGHT_BYTES",
        ),
    ],
)
async def test_over_a_limit_is_503_with_retry_after_until_released(
    settings: Settings, second_size: int
) -> None:
    headers = {"authorization": "Bearer ev", "content-length": str(second_size)}
    async with hold(settings, Upload(stall_after=1)) as held:
        assert held.admission.requests == 1
        assert held.admission.bytes == held.upload.size
        refused = await held.client.post("/events", content=b" " * second_size, headers=headers)

        assert refused.status_code == 503
        assert refused.json()["error"] == "overloaded"
        assert refused.headers["retry-after"] == "5"

        first = await held.finish()
        assert first.json()["error"] == "bad_request"  # read whole, then not JSON
        assert (held.admission.requests, held.admission.bytes) == (0, 0)
        again = await held.client.post("/events", content=b" " * second_size, headers=headers)
        assert again.json()["error"] == "bad_request"


async def test_a_chunked_body_reserves_as_it_grows() -> None:
    settings = SETTINGS.with_overrides(max_inflight_bytes=5 * MiB)
    async with hold(settings, Upload(chunks=17, stall_after=16), chunked=True) as held:
        assert held.admission.bytes == MiB  # what arrived so far, nothing declared
        chunked = Upload(chunks=80)
        response = await held.client.post(
            "/events", content=chunked, headers={"authorization": "Bearer ev"}
        )
        assert response.status_code == 503
        assert response.json()["error"] == "overloaded"
        assert 0 < chunked.pulled < 80
        await held.finish()
        assert held.admission.bytes == 0


async def test_a_stalled_body_is_408() -> None:
    settings = SETTINGS.with_overrides(body_timeout_s=0.05)
    upload = Upload(chunks=2, stall_after=1)
    async with client_for(settings) as client:
        response = await post(client, "/events", {"authorization": "Bearer ev"}, upload)
    assert response.status_code == 408
    assert response.json()["error"] == "request_timeout"
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        pytest.param("GET", "/events", "POST", id="GET a webhook"),
        pytest.param("PUT", "/webhooks/kit", "POST", id="PUT a webhook"),
        pytest.param("POST", "/healthz", "GET, HEAD", id="POST an operations endpoint"),
        pytest.param("DELETE", "/metrics", "GET, HEAD", id="DELETE metrics"),
    ],
)
async def test_405_names_the_allowed_methods(method: str, path: str, allow: str) -> None:
    async with client_for(SETTINGS) as client:
        response = await client.request(method, path)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))
    assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("held", "declared", "grows_to", "admitted"),
    [
        pytest.param([], None, [100], True, id="chunked body within the budget"),
        pytest.param([], 100, [], True, id="declared body exactly the budget"),
        pytest.param([], 101, [], False, id="declared body over the budget"),
        pytest.param([60], 40, [40], True, id="declared fits next to another"),
        pytest.param([60], None, [30, 41], False, id="chunked body outgrows what is left"),
        pytest.param([60], 20, [10, 20], True, id="growing within the declared size"),
        pytest.param([None, None], None, [], False, id="third request over the count"),
    ],
)
def test_admission(
    held: list[int | None], declared: int | None, grows_to: list[int], admitted: bool
) -> None:
    admission = Admission(max_requests=2, max_bytes=100)
    others = [admission.enter(size) for size in held]
    try:
        with admission.enter(declared) as ticket:
            for size in grows_to:
                ticket.cover(size)
    except Overloaded:
        assert not admitted
    else:
        assert admitted
    assert admission.requests == len(others)
    assert admission.bytes == sum(size or 0 for size in held)
    for other in others:
        other.__exit__(None, None, None)
    assert (admission.requests, admission.bytes) == (0, 0)


@pytest.mark.parametrize(
    ("content", "closes"),
    [
        pytest.param(b"x" * 1000, True, id="with a body"),
        pytest.param(b"", False, id="without a body"),
    ],
)
async def test_unknown_path_closes_a_connection_with_an_unread_body(
    content: bytes, closes: bool
) -> None:
    async with client_for(SETTINGS) as client:
        response = await client.post("/webhooks/unknown", content=content)
    assert response.status_code == 404
    assert (response.headers.get("connection") == "close") is closes


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"MAX_BODY_BYTES": "100", "MAX_INFLIGHT_BYTES": "99"},
            "MAX_INFLIGHT_BYTES must be >= MAX_BODY_BYTES",
            id="budget below one body",
        ),
        pytest.param({"MAX_CONCURRENT_REQUESTS": "0"}, ">= 1", id="no request allowed"),
        pytest.param({"MAX_HEADER_BYTES": "100"}, ">= 1024", id="header bytes too small"),
        pytest.param({"HEADER_TIMEOUT_S": "0"}, "must be > 0", id="zero head timeout"),
        pytest.param({"BODY_TIMEOUT_S": "x"}, "must be a number", id="body timeout not a number"),
    ],
)
def test_limit_settings_are_validated(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(env)


def test_limit_defaults_suit_a_512_mib_pod() -> None:
    settings = from_mapping({})
    assert settings.max_inflight_bytes == 64 * MiB
    assert settings.max_body_bytes <= settings.max_inflight_bytes
    assert settings.max_concurrent_requests == 256
    assert (settings.max_header_bytes, settings.max_headers) == (16 * 1024, 100)
    assert (settings.header_timeout_s, settings.body_timeout_s) == (10, 30)


def test_an_endpoint_admission_needs_room_in_the_process_as_well() -> None:
    process = Admission(max_requests=3, max_bytes=100)
    kit = Admission(max_requests=1, max_bytes=60, within=process)
    other = Admission(max_requests=3, max_bytes=100, within=process)
    with kit.enter(50):
        with pytest.raises(Overloaded, match="over 1 requests"):
            kit.enter()
        with pytest.raises(Overloaded, match="budget of 100"):
            other.enter(60)
        with other.enter(50) as ticket:
            assert (process.requests, process.bytes) == (2, 100)
            with pytest.raises(Overloaded):
                ticket.cover(51)
    assert (process.requests, process.bytes, kit.bytes, other.bytes) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        pytest.param(EndpointLimits(), (256, 64 * MiB, 5 * MiB, 30.0), id="process-wide"),
        pytest.param(
            EndpointLimits(share=0.25, max_body_bytes=MiB, body_timeout_s=10),
            (64, 16 * MiB, MiB, 10.0),
            id="a share, a smaller cap and timeout",
        ),
        pytest.param(
            EndpointLimits(max_body_bytes=50 * MiB, body_timeout_s=99),
            (256, 64 * MiB, 5 * MiB, 30.0),
            id="never above the settings",
        ),
    ],
)
def test_effective_limits(limits: EndpointLimits, expected: tuple[int, int, int, float]) -> None:
    got = effective(
        limits, max_requests=256, max_bytes=64 * MiB, max_body_bytes=5 * MiB, body_timeout_s=30
    )
    assert (got.max_requests, got.max_bytes, got.max_body_bytes, got.body_timeout_s) == expected


def test_a_share_never_holds_less_than_one_body_at_its_cap() -> None:
    got = effective(
        EndpointLimits(share=0.01), max_requests=10, max_bytes=6 * MiB, max_body_bytes=5 * MiB,
        body_timeout_s=30,
    )  # fmt: skip
    assert (got.max_requests, got.max_bytes) == (1, 5 * MiB)


async def test_a_body_over_the_endpoint_cap_is_413_before_it_is_read() -> None:
    upload = Upload(chunks=17)  # 1 MiB + 64 KiB, under MAX_BODY_BYTES, over Kit's cap
    signature = sign_timestamped(("kit",), int(time.time()), b"")
    async with client_for(SETTINGS) as client:
        response = await post(client, "/webhooks/kit", {"x-kit-signature": signature}, upload)
    assert response.status_code == 413
    assert upload.pulled == 0


def _shown(value: float | int | None, setting: str, unit: str) -> str:
    if value is None:
        return f"`{setting}`"
    if unit == "bytes":
        return f"{int(value) // MiB} MiB"
    return f"{value:g} s"


def test_readme_table_of_endpoint_limits_matches_the_declarations() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("<!-- endpoint-limits -->\n")[1].split("<!-- /endpoint-limits -->")[0]
    expected = [
        "| endpoint | share of requests and bytes | body cap | body timeout |",
        "|---|---|---|---|",
    ]
    for endpoint in ENDPOINTS:
        limits = endpoint.limits
        share = "all" if limits.share == 1 else f"1/{round(1 / limits.share)}"
        expected.append(
            f"| `{endpoint.path}` | {share} "
            f"| {_shown(limits.max_body_bytes, 'MAX_BODY_BYTES', 'bytes')} "
            f"| {_shown(limits.body_timeout_s, 'BODY_TIMEOUT_S', 's')} |"
        )
    assert table.strip().splitlines() == expected
