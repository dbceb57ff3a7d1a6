"""The operator console under a real uvicorn server on a loopback port, as the tests use it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from core.settings import Settings
from ingest.serve import Server
from ingester.console.app import create_app
from tests.integration.ingest_harness import loopback, running

TOKEN = "console-test-token-7f3a"


@asynccontextmanager
async def serving_console(
    settings: Settings, token: str = TOKEN, *, sample_s: float = 5.0
) -> AsyncIterator[str]:
    """The console for ``settings`` on a free loopback port, sampling the pipeline every
    ``sample_s`` seconds; yields its base URL."""
    sock, _ = loopback()
    app = create_app(settings, token, sample_s=sample_s)
    config = uvicorn.Config(app, lifespan="on", access_log=False, log_config=None)
    async with running(Server(config), sock) as base:
        yield base
