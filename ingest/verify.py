"""Shared pieces of request verification: HMACs, constant-time comparison, signed timestamps.

Everything here is pure: the caller passes the headers (a case-insensitive mapping, or a
plain dict with lower-case names), the exact raw body bytes and the current time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from ingest.errors import (
    BadCredentials,
    BadSignature,
    FutureTimestamp,
    MalformedHeader,
    MissingHeader,
    StaleTimestamp,
)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def header_bytes(value: str) -> bytes:
    """The bytes a header value arrived as (ASGI servers decode header values as latin-1)."""
    return value.encode("latin-1", errors="replace")


def hmac_sha256_hex(secret: str | bytes, message: bytes) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object in Python.
    return hmac.digest(_bytes(secret), message, "sha256").hex()


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality (the time depends on the lengths only)."""
    return hmac.compare_digest(_bytes(a), _bytes(b))


@dataclass(frozen=True, slots=True)
class Signing:
    """What a signed request is checked against: its signature may match any of ``secrets``
    (rotation), and its signed timestamp must lie within ``tolerance_s`` of the arrival."""

    secrets: tuple[str, ...]
    tolerance_s: float


def check_path_token(params: Mapping[str, str], expected: str) -> None:
    """The ``{token}`` path segment of an unsigned hook equals the configured token."""
    if not equal(params.get("token", "").encode(), expected.encode()):
        raise BadCredentials("token does not match")


def require_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise MissingHeader(name)
    return value.strip()


def check_timestamp(signed_at: float, now: float, tolerance_s: float) -> None:
    """Reject a signed timestamp further than ``tolerance_s`` from ``now`` in either direction."""
    skew = now - signed_at
    if skew > tolerance_s:
        raise StaleTimestamp(skew)
    if -skew > tolerance_s:
        raise FutureTimestamp(-skew)


def check_hex_signature(expected: Iterable[str], candidates: Iterable[str], header: str) -> None:
    """Accept when any candidate equals any expected lower-case hex digest.

    Every pair is compared (no early exit) so the time taken does not depend on which
    secret or which candidate matched.
    """
    wanted = list(expected)
    matched = False
    for candidate in candidates:
        if not _HEX64.fullmatch(candidate):
            raise MalformedHeader(header, "signature is not 64 hex digits")
        for digest in wanted:
            matched |= equal(digest, candidate.lower())
    if not matched:
        raise BadSignature()


@dataclass(frozen=True, slots=True)
class TimestampedSignature:
    """A parsed ``t=<unix s>,v1=<hex>[,v1=<hex>...]`` header."""

    timestamp: str  # exactly as received: it is part of the signed message
    signatures: tuple[str, ...]


def parse_timestamped_signature(value: str, header: str) -> TimestampedSignature:
    """Parse ``t=...,v1=...``; other schemes (``v0=``...) are ignored, for forward compatibility."""
    timestamp: str | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            raise MalformedHeader(header, "expected key=value pairs")
        item = item.strip()
        if key == "t":
            if timestamp is not None or not _UNIX_SECONDS.fullmatch(item):
                raise MalformedHeader(header, "t must be one unix time in seconds")
            timestamp = item
        elif key == "v1":
            signatures.append(item)
    if timestamp is None:
        raise MalformedHeader(header, "no t=")
    if not signatures:
        raise MalformedHeader(header, "no v1=")
    return TimestampedSignature(timestamp, tuple(signatures))


def timestamped_message(timestamp: str, raw: bytes) -> bytes:
    """The signed message of RevenueCat and Kit: ``"{t}.{raw body}"``."""
    return timestamp.encode() + b"." + raw


def signed_recently(
    headers: Mapping[str, str], header: str, *, now: float, tolerance_s: float
) -> TimestampedSignature:
    """The parsed ``t=...,v1=...`` header, its timestamp within the tolerance: everything
    about it that can be checked before the body is read."""
    parsed = parse_timestamped_signature(require_header(headers, header), header)
    check_timestamp(int(parsed.timestamp), now, tolerance_s)
    return parsed


def verify_timestamped(
    headers: Mapping[str, str], header: str, raw: bytes, signing: Signing, *, now: float
) -> None:
    """Verify a ``t=...,v1=...`` HMAC-SHA256 header over ``"{t}.{raw}"`` against any secret."""
    parsed = signed_recently(headers, header, now=now, tolerance_s=signing.tolerance_s)
    message = timestamped_message(parsed.timestamp, raw)
    check_hex_signature(
        (hmac_sha256_hex(secret, message) for secret in signing.secrets),
        parsed.signatures,
        header,
    )


def sign_timestamped(secrets: Iterable[str], timestamp: int, raw: bytes) -> str:
    """The header value a sender computes (used by ``send-sample`` and the tests)."""
    message = timestamped_message(str(timestamp), raw)
    parts = [f"t={timestamp}"] + [f"v1={hmac_sha256_hex(s, message)}" for s in secrets]
    return ",".join(parts)


def parse_http_date(value: str, header: str) -> float:
    """``Thu, 04 Jan 2024 18:05:25 GMT`` -> unix seconds; a date without a zone is UTC."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise MalformedHeader(header, "not an HTTP date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise MalformedHeader(header, "not an HTTP date") from None
