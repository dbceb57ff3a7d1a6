"""Who may use the console: whoever holds ``CONSOLE_TOKEN`` (docs/contract.md §9).

A request gets in with ``Authorization: Bearer <token>`` or with the cookie the login form
sets. The cookie carries the name the operator gave (for the audit log), a random session id
and an HMAC of both keyed by the token, so it is checked without any server-side state and
changing the token ends every session. A session's CSRF token is an HMAC of its id; every
form that changes something carries it. ``/healthz``, ``/readyz`` and the login form are
open: they show nothing of the data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "console_session"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
MAX_FORM_BYTES = 16 * 1024
BEARER = "bearer"


@dataclass(frozen=True, slots=True)
class Operator:
    """Who sent a request: the name given at login (``bearer`` for the header), the session
    and the client's address."""

    name: str
    session: str
    address: str

    @property
    def who(self) -> str:
        return f"{self.name} ({self.address})"


def clean_name(raw: str) -> str:
    """A name fit for a log line: printable, at most 40 characters, ``operator`` if empty."""
    name = "".join(c for c in raw if c.isprintable()).strip()[:40]
    return name or "operator"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


class Sessions:
    """Sessions and CSRF tokens signed with the console token."""

    def __init__(self, token: str) -> None:
        self._key = token.encode()

    def _sign(self, purpose: str, text: str) -> str:
        return hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).hexdigest()

    def token_ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._key)

    def issue(self, name: str) -> str:
        """A new session cookie value for ``name``."""
        body = f"{_b64(clean_name(name))}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign('session', body)}"

    def open(self, cookie: str) -> tuple[str, str] | None:
        """(name, session id) of a cookie value this token signed, else None."""
        body, _, signature = cookie.rpartition(".")
        if not body or not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        encoded, _, session = body.partition(".")
        try:
            return clean_name(_unb64(encoded)), session
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None

    def csrf(self, session: str) -> str:
        return self._sign("csrf", session)[:32]

    def csrf_ok(self, session: str, candidate: str) -> bool:
        return hmac.compare_digest(candidate, self.csrf(session))

    def identify(self, conn: HTTPConnection) -> Operator | None:
        """The operator of a request, or None when it carries neither the token nor a
        session this token signed."""
        address = conn.client.host if conn.client else "?"
        scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credentials.strip()):
            return Operator(BEARER, BEARER, address)
        opened = self.open(conn.cookies.get(COOKIE, ""))
        return Operator(opened[0], opened[1], address) if opened else None


Refuse = Callable[[Request], Awaitable[Response]]


class TokenGate:
    """Lets a request through to the app only with the token or a session (the operator is
    put in ``request.state.operator``); answers every other one with ``refuse`` (the login
    page, 401). The open paths pass as they are."""

    def __init__(self, app: ASGIApp, sessions: Sessions, refuse: Refuse) -> None:
        self.app = app
        self.sessions = sessions
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        operator = self.sessions.identify(HTTPConnection(scope))
        if operator is None:
            response = await self.refuse(Request(scope, receive))
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["operator"] = operator
        await self.app(scope, receive, send)


class FormError(ValueError):
    """A form the console cannot take: too large, or not URL-encoded."""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body (the first value of each), at most
    :data:`MAX_FORM_BYTES`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("expected a form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormError(f"form larger than {MAX_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}
