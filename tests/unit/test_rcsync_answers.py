"""What an answer of RevenueCat's attributes endpoint means (rcsync.answers), and the client
side rate limit (rcsync.ratelimit) on a clock the test drives."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import orjson
import pytest

from rcsync import answers
from rcsync.model import Settled
from rcsync.ratelimit import CLIENT, RETRY_AFTER, TokenBucket

SENT = ("$email", "$displayName")
NOW = 1_800_000_000.0
ERRORS = orjson.dumps(
    {
        "code": 7263,
        "message": "Some customer attribute keys were unable to be saved.",
        "attribute_errors": [
            {"key_name": "$email", "message": "Value is not a valid email address."}
        ],
    }
)


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        pytest.param(200, b"{}", answers.Verdict(answers.OK, Settled(200, SENT)), id="200"),
        pytest.param(201, b"", answers.Verdict(answers.OK, Settled(201, SENT)), id="201"),
        pytest.param(
            400,
            ERRORS,
            answers.Verdict(
                answers.REFUSED,
                Settled(400, ("$displayName",), {"$email": "Value is not a valid email address."}),
            ),
            id="400 names one attribute: the other was saved",
        ),
        pytest.param(
            404,
            b'{"code": 7259, "message": "Subscriber not found."}',
            answers.Verdict(
                answers.REFUSED,
                Settled(404, (), dict.fromkeys(SENT, "HTTP 404: Subscriber not found.")),
            ),
            id="404 names none: all refused",
        ),
        pytest.param(
            422,
            b"<html>",
            answers.Verdict(answers.REFUSED, Settled(422, (), dict.fromkeys(SENT, "HTTP 422"))),
            id="unreadable body",
        ),
        pytest.param(500, b"", answers.Verdict(answers.TRANSIENT), id="500"),
        pytest.param(503, b"", answers.Verdict(answers.TRANSIENT), id="503"),
        pytest.param(408, b"", answers.Verdict(answers.TRANSIENT), id="408"),
        pytest.param(409, b"", answers.Verdict(answers.TRANSIENT), id="409"),
        pytest.param(401, b"", answers.Verdict(answers.UNAUTHORIZED), id="401: our key"),
        pytest.param(403, b"", answers.Verdict(answers.UNAUTHORIZED), id="403: our key"),
    ],
)
def test_judge(status: int, body: bytes, verdict: answers.Verdict) -> None:
    assert answers.judge(status, {}, body, SENT, NOW) == verdict


@pytest.mark.parametrize(
    ("headers", "body", "seconds"),
    [
        pytest.param({"retry-after": "3"}, b"", 3.0, id="seconds"),
        pytest.param({"retry-after": "0.5"}, b"", 0.5, id="fractional seconds"),
        pytest.param({}, b'{"backoff_ms": 2500}', 2.5, id="backoff_ms only"),
        pytest.param({"retry-after": "1"}, b'{"backoff_ms": 4000}', 4.0, id="the longer wins"),
        pytest.param(
            {"retry-after": formatdate(NOW + 7, usegmt=True)}, b"", 7.0, id="an HTTP date"
        ),
        pytest.param({"retry-after": "soon"}, b"", answers.DEFAULT_RETRY_AFTER_S, id="garbage"),
        pytest.param({}, b"", answers.DEFAULT_RETRY_AFTER_S, id="nothing said"),
        pytest.param({"retry-after": "-4"}, b"", 0.0, id="negative"),
    ],
)
def test_retry_after(headers: dict[str, str], body: bytes, seconds: float) -> None:
    verdict = answers.judge(429, headers, body, SENT, NOW)

    assert verdict.outcome == answers.RATE_LIMITED
    assert verdict.wait_s == pytest.approx(seconds)


class Clock:
    """Time that moves only when the bucket sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[tuple[str, float]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds

    def on_wait(self, reason: str, seconds: float) -> None:
        self.waits.append((reason, seconds))


async def test_calls_are_spaced_by_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(4.0, clock=clock, sleep=clock.sleep, on_wait=clock.on_wait)
    starts = []
    for _ in range(5):
        await bucket.take()
        starts.append(clock.now)

    assert starts == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0])
    assert {reason for reason, _ in clock.waits} == {CLIENT}


async def test_a_hold_stops_every_call_until_it_ends() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep, on_wait=clock.on_wait)
    await bucket.take()
    bucket.hold(2.0)
    waited = await bucket.take()

    assert clock.now == pytest.approx(102.0)
    assert waited == pytest.approx(2.0)
    assert [reason for reason, _ in clock.waits] == [RETRY_AFTER]
    assert clock.waits[0][1] == pytest.approx(2.0)


async def test_a_hold_that_arrives_during_a_wait_is_honoured() -> None:
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds
        if len(clock.waits) == 1:
            bucket.hold(5.0)  # a 429 answered while this caller waited its turn

    bucket = TokenBucket(1.0, clock=clock, sleep=sleep, on_wait=clock.on_wait)
    await bucket.take()
    await bucket.take()

    assert [reason for reason, _ in clock.waits] == [CLIENT, RETRY_AFTER]
    assert clock.now == pytest.approx(106.0)


async def test_concurrent_callers_take_turns() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    starts: list[float] = []

    async def call() -> None:
        await bucket.take()
        starts.append(clock.now)

    await asyncio.gather(*(call() for _ in range(6)))

    assert starts == pytest.approx([100.0, 100.5, 101.0, 101.5, 102.0, 102.5])


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0)
