"""``ingester serve`` and ``ingester consume``: the verbs that run until stopped and log JSON
lines on stderr. Each imports its side only when it runs, so an ingest process never loads
the consumers and a consumer process never loads the web side."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from core.errors import CommandError
from core.settings import ConfigError, Settings
from ingester.output import expected_failures

log = logging.getLogger("ingester.consume")


def listen(port: int, host: str = "0.0.0.0") -> socket.socket:  # noqa: S104
    """Bind the HTTP port before the server starts, so a taken port is one clear error.
    Every interface by default: a container serves on all of them."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CommandError(f"cannot listen on port {port}: {exc.strerror or exc}") from exc
    return sock


def serve(settings: Settings) -> int:
    """HTTP ingest on ``PORT`` until SIGTERM/SIGINT; see :func:`ingest.serve.run`."""
    from ingest.serve import run

    return run(settings, sockets=[listen(settings.port)])


async def consume(
    settings: Settings,
    only: tuple[str, ...],
    *,
    consumer_options: Mapping[str, Any] | None = None,
) -> int:
    """Run the built-in consumers (``only`` these streams, or all) until SIGTERM/SIGINT;
    see :func:`consumers.service.run_service` for the shutdown order. ``consumer_options``
    override aiokafka consumer settings (e.g. session timeouts). A failure it knows is
    logged (``consumer stopped``) before it goes up to be the command's one line."""
    from consumers.registry import build_handlers
    from consumers.service import run_service
    from core import logs

    logs.configure(settings.log_level)
    failures: tuple[type[BaseException], ...] = (ConfigError, *expected_failures())
    try:
        handlers = build_handlers(only)
        return await run_service(settings, handlers.values(), consumer_options=consumer_options)
    except failures as exc:
        log.critical("consumer stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise
