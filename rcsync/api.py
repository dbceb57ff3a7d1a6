"""The client of RevenueCat's ``POST /subscribers/{app_user_id}/attributes`` (REST API v1).

One call is retried until RevenueCat settles it (:mod:`rcsync.answers`): every attempt waits
its turn at the rate limit, is bounded by ``RC_SYNC_TIMEOUT_S``, and is counted by outcome;
a 429 holds every call for its ``Retry-After``; 5xx, timeouts, transport errors and 401/403
back off exponentially with jitter up to ``RC_SYNC_BACKOFF_MAX_S``. Retries re-send the very
same body, so a call that reached RevenueCat before its answer was lost changes nothing the
second time (RevenueCat keeps the value with the latest ``updated_at_ms``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

import httpx
import orjson

from consumers.backoff import Backoff
from core.settings import MissingSetting, Settings
from core.version import version
from rcsync import answers, metrics
from rcsync.model import Attributes, Settled
from rcsync.ratelimit import TokenBucket

log = logging.getLogger("rcsync.api")


class Sender(Protocol):
    """Sets attributes on one RevenueCat customer and returns RevenueCat's last word."""

    async def set_attributes(self, app_user_id: str, attributes: Attributes) -> Settled: ...


@dataclass(frozen=True, slots=True)
class ApiPolicy:
    url: str  # REVENUECAT_API_URL
    key: str  # REVENUECAT_API_KEY
    timeout_s: float  # RC_SYNC_TIMEOUT_S
    max_rps: float  # RC_SYNC_MAX_RPS
    backoff_max_s: float  # RC_SYNC_BACKOFF_MAX_S

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiPolicy:
        if not settings.revenuecat_api_key:
            raise MissingSetting("REVENUECAT_API_KEY")
        return cls(
            url=settings.revenuecat_api_url.rstrip("/"),
            key=settings.revenuecat_api_key,
            timeout_s=settings.rc_sync_timeout_s,
            max_rps=settings.rc_sync_max_rps,
            backoff_max_s=settings.rc_sync_backoff_max_s,
        )

    def backoff(self) -> Backoff:
        return Backoff(initial_s=1.0, factor=2.0, cap_s=self.backoff_max_s, jitter=0.5)


def attributes_path(app_user_id: str) -> str:
    """The path below the base URL; the id is URL-encoded, as RevenueCat asks."""
    return f"/subscribers/{quote(app_user_id, safe='')}/attributes"


class RevenueCatApi:
    def __init__(
        self,
        policy: ApiPolicy,
        client: httpx.AsyncClient,
        *,
        bucket: TokenBucket | None = None,
        backoff: Backoff | None = None,
        on_attempt: Callable[[], None] = lambda: None,
    ) -> None:
        self.policy = policy
        self.client = client
        self.bucket = bucket or TokenBucket(policy.max_rps, on_wait=metrics.waited)
        self.backoff = backoff or policy.backoff()
        self.on_attempt = on_attempt  # each failed attempt: the loop is alive, only waiting

    @staticmethod
    def client_for(policy: ApiPolicy) -> httpx.AsyncClient:
        """An HTTP client that bounds every call and never follows a redirect."""
        return httpx.AsyncClient(
            timeout=policy.timeout_s,
            headers={
                "Authorization": f"Bearer {policy.key}",
                "Content-Type": "application/json",
                "User-Agent": f"webhook-ingester-rc-sync/{version()}",
            },
        )

    async def set_attributes(self, app_user_id: str, attributes: Attributes) -> Settled:
        url = self.policy.url + attributes_path(app_user_id)
        body = orjson.dumps({"attributes": attributes})
        sent = tuple(attributes)
        failures = 0
        while True:
            await self.bucket.take()
            verdict = await self._attempt(url, body, sent)
            metrics.CALLS.labels(verdict.outcome).inc()
            if verdict.settled is not None:
                return verdict.settled
            self.on_attempt()
            if verdict.wait_s is not None:
                log.warning(
                    "RevenueCat rate limit: holding every call",
                    extra={"retry_after_s": verdict.wait_s},
                )
                self.bucket.hold(verdict.wait_s)
                continue
            delay = self.backoff.delay(failures)
            failures += 1
            log.log(
                logging.ERROR if verdict.outcome == answers.UNAUTHORIZED else logging.WARNING,
                "RevenueCat refused the API key (check REVENUECAT_API_KEY); retrying"
                if verdict.outcome == answers.UNAUTHORIZED
                else "RevenueCat call failed; retrying",
                extra={"outcome": verdict.outcome, "retry_in_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)

    async def _attempt(self, url: str, body: bytes, sent: tuple[str, ...]) -> answers.Verdict:
        try:
            response = await self.client.post(url, content=body)
        except httpx.TimeoutException:
            return answers.Verdict(answers.TIMEOUT)
        except httpx.TransportError as exc:
            log.debug("RevenueCat unreachable", extra={"error": f"{type(exc).__name__}: {exc}"})
            return answers.Verdict(answers.TRANSPORT)
        return answers.judge(
            response.status_code, response.headers, response.content, sent, time.time()
        )
