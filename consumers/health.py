"""The consumer process's own small HTTP server: /healthz, /readyz, /metrics.

/healthz answers 200 while the loop is live (503 once it made no progress for
``LIVENESS_STALL_S`` while work is waiting, see ``consumers.liveness``); /readyz 200 only
while the consumer holds partitions, the broker answers a metadata request and the database
answers ``SELECT 1``; /metrics is the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Probe = Callable[[], Awaitable[dict[str, bool]]]
LivenessProbe = Callable[[], dict[str, Any]]


def _always_live() -> dict[str, Any]:
    return {"live": True}


def build_app(readiness: Probe, liveness: LivenessProbe = _always_live) -> Starlette:
    async def healthz(request: Request) -> Response:
        state = liveness()
        live = bool(state.get("live"))
        return JSONResponse(
            {"status": "ok" if live else "stalled", **state}, status_code=200 if live else 503
        )

    async def readyz(request: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )


# uvicorn logs "Started server process" and friends under uvicorn.error for every server;
# from this one they read like a second ingest server. Drop its info lines, only its own.
_IN_HEALTH_SERVER = contextvars.ContextVar("in_health_server", default=False)


def _not_health_info(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not _IN_HEALTH_SERVER.get()


logging.getLogger("uvicorn.error").addFilter(_not_health_info)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The consumer's own handlers own SIGTERM/SIGINT: the signal stops consuming first,
        # and this server is closed last.
        yield


class AppServer:
    """Serves an ASGI ``app`` on ``host:port`` (port 0 picks a free one) in a task, without
    taking the process's signals."""

    def __init__(
        self,
        app: Any,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, lifespan="off", log_config=None, access_log=False, server_header=False
        )
        self._server = _Server(config)
        context = contextvars.copy_context()
        context.run(_IN_HEALTH_SERVER.set, True)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), context=context)
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._server = None
        self._task = None


class HealthServer(AppServer):
    """Serves :func:`build_app` on ``host:port``."""

    def __init__(
        self,
        readiness: Probe,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104
        liveness: LivenessProbe = _always_live,
    ) -> None:
        super().__init__(build_app(readiness, liveness), port, host)
