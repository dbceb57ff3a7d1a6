"""Structured logs: one JSON object a line, never a secret, never a full email address."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of the message
}


def mask_email(email: str | None) -> str | None:
    """``jane.doe@example.com`` -> ``j***@example.com``; keeps logs useful without the address."""
    if not email or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka's warnings matter (a member evicted for exceeding max_poll_interval_ms, a
    # rebalance, a commit refused), so WARNING and up reach the logs. Its reconnect loop logs
    # each failed attempt at ERROR from aiokafka.conn, one line per attempt: that logger stays
    # quieter, and our own "fetch failed; retrying" / outage messages say the broker is away.
    logging.getLogger("aiokafka").setLevel(logging.WARNING if level != "DEBUG" else "DEBUG")
    logging.getLogger("aiokafka.conn").setLevel(logging.CRITICAL if level != "DEBUG" else "DEBUG")
