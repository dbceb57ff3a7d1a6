"""The operator console under a real uvicorn server on a loopback port, as the tests use it."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from core.settings import Settings
from ingest.serve import Server
from ingester.console.app import create_app

TOKEN = "console-test-token-7f3a"


@asynccontextmanager
async def serving_console(
    settings: Settings, token: str = TOKEN, *, sample_s: float = 5.0
) -> AsyncIterator[str]:
    """The console for ``settings`` on a free loopback port, sampling the pipeline every
    ``sample_s`` seconds; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, token, sample_s=sample_s),
        lifespan="on",
        access_log=False,
        log_config=None,
    )
    server = Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            await task
            raise RuntimeError("the console stopped during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("the console did not start")
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
