"""``ingester serve``: the ingest app under uvicorn, with a graceful SIGTERM.

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight requests finish
(each is answered only after Kafka acknowledged its records), then the lifespan flushes and
closes the producer and the process exits 0.

The HTTP protocol is httptools with the request-head limits of :mod:`ingest.protocol`
(``MAX_HEADER_BYTES``, ``MAX_HEADERS``, ``HEADER_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

from core import telemetry
from core.logs import configure
from core.settings import Settings
from ingest.app import create_app
from ingest.protocol import HeadLimits, limited_protocol
from ingest.publisher import Publisher

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
KEEPALIVE_TIMEOUT_S = 75


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the captured signal after a graceful shutdown
    (which would end the process by the signal instead of exiting 0)."""

    app: Starlette  # the ingest app it serves (its ``state.runtime``), for tests and tools
    tracer_provider: TracerProvider | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def make_server(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - a container serves on every interface
    tracer_provider: TracerProvider | None = None,
) -> Server:
    """The server; with ``tracer_provider`` given, or spans exported
    (``OTEL_EXPORTER_OTLP_ENDPOINT``), each request is a span of the ASGI instrumentation
    (continuing the caller's ``traceparent``), which its records carry. Otherwise the
    request path makes no span and passes the caller's trace on (docs/benchmarks.md)."""
    app = create_app(settings, publisher)
    if tracer_provider is None and telemetry.exporting(settings):
        tracer_provider = telemetry.tracer_provider(settings, "ingester-ingest")
    asgi: Any = app
    if tracer_provider is not None:
        asgi = OpenTelemetryMiddleware(
            app, tracer_provider=tracer_provider, exclude_spans=["receive", "send"]
        )
    config = uvicorn.Config(
        asgi,
        host=host,
        port=settings.port,
        http=limited_protocol(
            HeadLimits(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s),
            app.state.runtime.metrics.head_refusals,
        ),
        loop="none",  # the loop is chosen by run() (uvloop when installed)
        lifespan="on",
        # The app logs one JSON line per request itself, with the route template instead
        # of the URL (token paths are secrets).
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_deadline_s)),
        # Longer than an ingress keeps idle upstream connections (nginx: 60 s), so the
        # ingress never sends a request on a connection this side is just closing.
        timeout_keep_alive=KEEPALIVE_TIMEOUT_S,
    )
    server = Server(config)
    server.app = app
    server.tracer_provider = tracer_provider
    return server


async def serve(settings: Settings, *, sockets: list[socket.socket] | None = None) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish before this returns."""
    server = make_server(settings)
    try:
        await server.serve(sockets=sockets)
    finally:
        if server.tracer_provider is not None:
            server.tracer_provider.shutdown()  # exports what is left
    if not server.started:
        raise RuntimeError(f"the ingest server could not start on port {settings.port}")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not _available("uvloop"):
        return None
    import uvloop

    factory: Callable[[], Any] = uvloop.new_event_loop
    return factory


def run(settings: Settings, *, sockets: list[socket.socket] | None = None) -> int:
    """Blocking entry point of ``ingester serve``; 0 after a graceful shutdown. ``sockets``:
    already bound listening sockets (the CLI binds first, to report a taken port)."""
    configure(settings.log_level)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(settings, sockets=sockets))
    return 0
