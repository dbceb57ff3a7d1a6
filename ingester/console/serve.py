"""``ingester console``: the console under uvicorn until SIGTERM/SIGINT, on a socket bound
first (a taken port is one clear line)."""

from __future__ import annotations

import asyncio

from core.errors import CommandError
from core.logs import configure
from core.settings import Settings


def serve_console(settings: Settings) -> int:
    """Serve the console until SIGTERM/SIGINT; refuses to start without ``CONSOLE_TOKEN``."""
    if not settings.console_token:
        raise CommandError("CONSOLE_TOKEN is not set: the console refuses to start without it")
    settings.require_database_url()
    settings.require_kafka()
    import uvicorn

    from ingest.serve import Server
    from ingester.console.app import create_app
    from ingester.services import listen

    sock = listen(settings.console_port, settings.console_host)
    configure(settings.log_level)
    server = Server(
        uvicorn.Config(
            create_app(settings, settings.console_token),
            lifespan="on",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
    )
    asyncio.run(server.serve(sockets=[sock]))
    return 0
