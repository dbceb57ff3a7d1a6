"""The consumers' health server does not announce itself like a second ingest server."""

from __future__ import annotations

import logging

import pytest

from consumers.health import HealthServer


async def ready() -> dict[str, bool]:
    return {"consumer": True}


async def test_health_server_start_and_stop_log_no_uvicorn_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    server = HealthServer(ready, port=0, host="127.0.0.1")
    await server.start()
    await server.stop()
    # Outside the health server, uvicorn.error still logs as usual (ingest's own lines).
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 1)

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "uvicorn.error"]
    assert lines == [(logging.INFO, "Started server process [1]")]
