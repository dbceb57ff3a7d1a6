"""schemathesis, the OpenAPI fuzzer, against the real server (uvicorn on loopback, the real
broker, every endpoint configured): every check it has passes on /openapi.json.

It generates schema-valid and schema-invalid requests for every operation (bounded, so the
run takes seconds) and checks the answers: no 5xx, only documented statuses, headers and
bodies, schema-valid requests accepted, invalid ones refused, credentials required. The
signed webhooks are signed by tests/integration/schemathesis_hooks.py; RevenueCat runs
without its optional HMAC (its header check is the same code as Kit's, covered there).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path

from core.settings import SETTINGS, Settings
from core.topics import create_topics
from tests.conftest import SessionStack, make_settings
from tests.integration import ingest_harness as h

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 15
RUN_TIMEOUT_S = 300


def _environment(settings: Settings) -> dict[str, str]:
    """The settings' secrets under their variables, for the hooks and the auth config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMATHESIS", "HYPO"))}
    for declaration in SETTINGS:
        value = getattr(settings, declaration.attribute)
        if declaration.group == "endpoints" and value not in (None, ()):
            env[declaration.variable] = ",".join(value) if isinstance(value, tuple) else str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


# The coverage phase tries every boundary of every schema (not bounded by --max-examples);
# two unexpected methods are enough to check the 405 and its Allow header.
CONFIG = """
hooks = "tests.integration.schemathesis_hooks"
[phases.coverage]
unexpected-methods = ["PUT", "DELETE"]
[auth.openapi.eventsBearer]
bearer = "${EVENTS_API_KEY}"
[auth.openapi.revenuecatAuthorization]
api_key = "${REVENUECAT_AUTHORIZATION}"
"""


async def test_schemathesis_finds_nothing(stack: SessionStack, tmp_path: Path) -> None:
    assert SCHEMATHESIS.exists(), "schemathesis is a dev dependency (pip install -e '.[dev]')"
    settings = make_settings(None, stack.bootstrap, f"fz{uuid.uuid4().hex[:8]}.").with_overrides(
        revenuecat_webhook_secret=None
    )
    await create_topics(settings)
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    async with h.kafka_publisher(settings) as publisher, h.serving(settings, publisher) as url:
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "--config-file",
            str(tmp_path / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            # One worker: hypothesis's lambda descriptions call ast.parse, which CPython 3.11
            # can fail in two threads at once (SystemError: AST constructor recursion depth).
            "--workers",
            "1",
            "--seed",
            "22",
            "--generation-database",
            "none",
            "--no-color",
            cwd=tmp_path,  # schemathesis keeps a cache of crashes in its working folder
            env=_environment(settings),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-20000:]


def test_schemathesis_is_installed() -> None:
    assert shutil.which("schemathesis", path=str(SCHEMATHESIS.parent)), "dev dependency"
