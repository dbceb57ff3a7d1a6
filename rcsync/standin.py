"""A stand-in for the one RevenueCat endpoint rc-sync calls, for the tests and ``make dev
RC_SYNC=1`` (RevenueCat cannot be reached from either): a real HTTP server on loopback.

``POST /v1/subscribers/{app_user_id}/attributes`` behaves as RevenueCat's API v1 documents it:
a Bearer key, a JSON body ``{"attributes": {"<key>": {"value": ..., "updated_at_ms": ...}}}``,
each attribute kept only when its ``updated_at_ms`` is newer than the stored one (an empty
or null value deletes it), 200 with the customer, or 400 with ``code`` 7263 and
``attribute_errors`` naming the attributes it could not save (the others are saved).
``GET /v1/subscribers/{app_user_id}`` shows a customer's attributes.

Tests script it: ``faults`` answers the next requests 429 (with ``Retry-After`` and
``backoff_ms``) or 5xx before anything is saved; ``hold()`` saves a request and then keeps its
answer until ``release()`` (a call that reached RevenueCat whose answer the caller never
sees); ``received`` and ``applied`` record what arrived and what changed.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from consumers.health import AppServer

_KEY = re.compile(r"^(\$[A-Za-z][A-Za-z0-9_]*|[A-Za-z][A-Za-z0-9_-]{0,39})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_VALUE = 500
INVALID_ATTRIBUTES = 7263


@dataclass(frozen=True, slots=True)
class Fault:
    """The answer to one coming request instead of saving it: 429 or 5xx."""

    status: int
    retry_after_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # time.monotonic() on arrival
    app_user_id: str
    attributes: dict[str, Any]
    status: int  # what it was answered


def _error(status: int, code: int, message: str, **more: Any) -> Response:
    return JSONResponse({"code": code, "message": message, **more}, status_code=status)


def attribute_error(key: str, entry: Any) -> str | None:
    """Why RevenueCat would not save this attribute, or None."""
    if not _KEY.match(key):
        return "Key name format is not valid."
    if not isinstance(entry, dict) or "value" not in entry:
        return "Attribute must be an object with a value."
    value, stamp = entry["value"], entry.get("updated_at_ms")
    if value is not None and not isinstance(value, str):
        return "Value must be a string."
    if stamp is not None and (not isinstance(stamp, int | float) or not math.isfinite(stamp)):
        return "updated_at_ms must be a number."
    if value and len(value) > MAX_VALUE:
        return "Value is too long."
    if key == "$email" and value and not _EMAIL.match(value):
        return "Value is not a valid email address."
    return None


class RevenueCatStandIn:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.customers: dict[str, dict[str, dict[str, Any]]] = {}
        self.received: list[Received] = []
        self.applied: list[tuple[str, str, Any, Any]] = []  # id, key, value, updated_at_ms
        self.faults: deque[Fault] = deque()
        self._holding = False
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()
        self.app = Starlette(
            routes=[
                Route("/v1/subscribers/{app_user_id}/attributes", self._post, methods=["POST"]),
                Route("/v1/subscribers/{app_user_id}", self._get, methods=["GET"]),
            ]
        )

    def hold(self) -> None:
        """Save the coming requests, but keep their answers until :meth:`release`."""
        self._holding = True
        self._released.clear()

    def release(self) -> None:
        self._holding = False
        self._released.set()

    def sent(self, app_user_id: str, key: str) -> set[tuple[Any, Any]]:
        """Distinct (value, updated_at_ms) received for one attribute of one customer."""
        return {
            (r.attributes[key].get("value"), r.attributes[key].get("updated_at_ms"))
            for r in self.received
            if r.app_user_id == app_user_id and isinstance(r.attributes.get(key), dict)
        }

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(predicate), timeout_s)

    def _authorized(self, request: Request) -> bool:
        return self.api_key is None or request.headers.get("authorization") == (
            f"Bearer {self.api_key}"
        )

    async def _get(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(401, 7225, "Invalid API key.")
        return JSONResponse(self._customer(request.path_params["app_user_id"]))

    async def _post(self, request: Request) -> Response:
        app_user_id = request.path_params["app_user_id"]
        arrived = time.monotonic()
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            body = None
        attributes = body.get("attributes") if isinstance(body, dict) else None
        response = self._answer(request, app_user_id, attributes)
        self.received.append(
            Received(arrived, app_user_id, dict(attributes or {}), response.status_code)
        )
        async with self._arrived:
            self._arrived.notify_all()
        if self._holding and response.status_code < 500 and response.status_code != 429:
            await self._released.wait()
        return response

    def _answer(self, request: Request, app_user_id: str, attributes: Any) -> Response:
        if not self._authorized(request):
            return _error(401, 7225, "Invalid API key.")
        if self.faults:
            fault = self.faults.popleft()
            if fault.status == 429:
                wait_ms = int(fault.retry_after_s * 1000)
                return JSONResponse(
                    {
                        "type": "rate_limit_error",
                        "message": "Rate limit exceeded",
                        "retryable": True,
                        "backoff_ms": wait_ms,
                    },
                    status_code=429,
                    headers={"Retry-After": f"{fault.retry_after_s:g}"},
                )
            return _error(fault.status, 7110, "Internal server error.")
        if not isinstance(attributes, dict):
            return _error(400, 7225, "attributes must be an object.")
        errors = [
            {"key_name": key, "message": why}
            for key, entry in attributes.items()
            if (why := attribute_error(key, entry))
        ]
        refused = {e["key_name"] for e in errors}
        for key, entry in attributes.items():
            if key not in refused:
                self._save(app_user_id, key, entry)
        if errors:
            return _error(
                400,
                INVALID_ATTRIBUTES,
                "Some customer attribute keys were unable to be saved.",
                attribute_errors=errors,
            )
        return JSONResponse(self._customer(app_user_id))

    def _save(self, app_user_id: str, key: str, entry: dict[str, Any]) -> None:
        """RevenueCat's rule: the latest ``updated_at_ms`` wins; a repeat changes nothing."""
        stamp = entry.get("updated_at_ms") or int(time.time() * 1000)
        stored = self.customers.setdefault(app_user_id, {})
        previous = stored.get(key)
        if previous is not None and previous["updated_at_ms"] >= stamp:
            return
        if entry["value"]:
            stored[key] = {"value": entry["value"], "updated_at_ms": stamp}
        else:
            stored.pop(key, None)
        self.applied.append((app_user_id, key, entry["value"], stamp))

    def _customer(self, app_user_id: str) -> dict[str, Any]:
        now = time.time()
        return {
            "request_date_ms": int(now * 1000),
            "subscriber": {
                "original_app_user_id": app_user_id,
                "subscriber_attributes": self.customers.get(app_user_id, {}),
                "entitlements": {},
                "subscriptions": {},
                "non_subscriptions": {},
            },
        }


class StandInServer(AppServer):
    """The stand-in served on loopback; its base URL (REVENUECAT_API_URL) is :attr:`url`."""

    def __init__(self, standin: RevenueCatStandIn, port: int = 0) -> None:
        super().__init__(standin.app, port, host="127.0.0.1")
        self.standin = standin

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"
