"""Reading provider bodies: small pure accessors that fail with a 400 naming the field."""

from __future__ import annotations

from typing import Any

import orjson

from contract.fields import dig as dig
from ingest.errors import BadRequest


def parse_object(raw: bytes) -> dict[str, Any]:
    """Decode the raw body; it must be one JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def require_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{path}: must be an object")
    return value


def require_list(value: Any, path: str, *, minimum: int, maximum: int) -> list[Any]:
    if not isinstance(value, list) or not minimum <= len(value) <= maximum:
        raise BadRequest(f"{path}: must be an array of {minimum} to {maximum} items")
    return value


def require_text(value: Any, path: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{path}: is required (a non-empty string)")
    return value


def require_id(value: Any, path: str) -> str:
    """An identifier given as a non-empty string or an integer (Kit uses both)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return require_text(value, path)


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def dumps(value: Any) -> bytes:
    """One event's JSON bytes (the record value)."""
    return orjson.dumps(value)
