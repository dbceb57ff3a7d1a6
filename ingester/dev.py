"""``ingester dev``: the whole service on one laptop, no Docker, no installed servers.

Starts the embedded PostgreSQL (data kept in ``.dev/pgdata``) and the embedded broker (or
uses ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``), migrates, creates the topics, writes
``.dev/stack.env`` (so ``ingester send-sample`` in another terminal finds the servers and the
dev secrets), then runs ``ingester serve`` and ``ingester consume`` as child processes until
Ctrl-C or SIGTERM, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from core import devstack, migrate
from core.settings import DEV_ENV_FILE, Settings, load
from core.topics import create_topics

STATE_DIR = DEV_ENV_FILE.parent
CHILDREN_PID_FILE = STATE_DIR / "children.pid"

# Well-known secrets for local use only; printed by `make dev`, never used in production
# (production reads its own from a Kubernetes Secret, and unset secrets disable endpoints).
DEV_SECRETS = {
    "REVENUECAT_AUTHORIZATION": "Bearer dev-revenuecat-auth",
    "REVENUECAT_WEBHOOK_SECRET": "dev-revenuecat-hmac",
    "KLAVIYO_WEBHOOK_SECRET": "dev-klaviyo-secret",
    "KLAVIYO_FLOW_TOKEN": "dev-klaviyo-flow-token",
    "KIT_WEBHOOK_SECRET": "dev-kit-secret",
    "KIT_LEGACY_TOKEN": "dev-kit-legacy-token",
    "EVENTS_API_KEY": "dev-events-key",
}
_SECRET_FIELDS = {
    "REVENUECAT_AUTHORIZATION": "revenuecat_authorization",
    "REVENUECAT_WEBHOOK_SECRET": "revenuecat_webhook_secret",
    "KLAVIYO_WEBHOOK_SECRET": "klaviyo_webhook_secret",
    "KLAVIYO_FLOW_TOKEN": "klaviyo_flow_token",
    "KIT_WEBHOOK_SECRET": "kit_webhook_secrets",
    "KIT_LEGACY_TOKEN": "kit_legacy_token",
    "EVENTS_API_KEY": "events_api_key",
}


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def stack_env(settings: Settings, stack: devstack.Stack) -> dict[str, str]:
    """The variables the child processes and later CLI calls need (real env still wins)."""
    env = {
        "DATABASE_URL": stack.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "ENVIRONMENT": settings.environment,
        "PORT": str(settings.port),
    }
    if stack.broker is not None:
        env["KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # Tansu rejects InitProducerId
    for name, value in DEV_SECRETS.items():
        if not getattr(settings, _SECRET_FIELDS[name]):
            env[name] = value
    return env


def write_env_file(path: Path, env: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# written by `ingester dev`; real environment variables take precedence"]
    lines += [f"{key}={value}" for key, value in env.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _kill_stale_children() -> None:
    """Stop the serve/consume processes a killed ``ingester dev`` left behind (they hold the
    ports), and wait until they are gone."""
    if not CHILDREN_PID_FILE.exists():
        return
    pids = [int(raw) for raw in CHILDREN_PID_FILE.read_text().split() if raw.isdigit()]
    devstack.terminate_pids(pids, marker=b"ingester")
    CHILDREN_PID_FILE.unlink(missing_ok=True)


async def _prepare(settings: Settings, *, seed_demo: bool) -> None:
    await migrate.migrate(settings.require_database_url(), migrate.migrations_dir(settings))
    if seed_demo:
        from ingester.devseed import seed

        await seed(settings.require_database_url())
    await create_topics(settings)


def _banner(settings: Settings, env: dict[str, str]) -> str:
    base = f"http://127.0.0.1:{settings.port}"
    samples = " | ".join(("revenuecat", "klaviyo", "klaviyo-flow", "kit", "events"))
    lines = [
        "",
        "webhook ingester is running (Ctrl-C stops everything)",
        f"  ingest:     {base}  (healthz {base}/healthz, metrics {base}/metrics)",
        f"  consumers:  metrics http://127.0.0.1:{settings.consumer_metrics_port}/metrics",
        f"  postgres:   {env['DATABASE_URL']}",
        f"  kafka:      {env['KAFKA_BOOTSTRAP_SERVERS']}",
        "  dev secrets (also in .dev/stack.env):",
        *(f"    {k}={v}" for k, v in env.items() if k in DEV_SECRETS),
        "  try, in another terminal:",
        f"    .venv/bin/ingester send-sample {{{samples}}}",
        "    .venv/bin/ingester experiments report checkout-button",
        "",
    ]
    return "\n".join(lines)


def _spawn(verb: str) -> subprocess.Popen[bytes]:
    # New session: Ctrl-C reaches only this process, which then stops the children in order.
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "ingester.cli", verb], start_new_session=True
    )


def _wait_until_serving(
    settings: Settings, children: list[subprocess.Popen[bytes]], timeout: float = 60.0
) -> None:
    """Block until ingest answers /healthz, so the banner never invites a refused request."""
    import httpx

    url = f"http://127.0.0.1:{settings.port}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return  # the main loop reports the exit code
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise devstack.StackError(f"ingest did not answer {url} within {timeout:.0f} s")


def _stop_children(children: list[subprocess.Popen[bytes]], deadline_s: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    end = time.monotonic() + deadline_s
    for child in children:
        try:
            child.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    CHILDREN_PID_FILE.unlink(missing_ok=True)


def run_dev(settings: Settings) -> int:
    _kill_stale_children()
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        stack = devstack.start_stack(
            STATE_DIR,
            database_url=settings.database_url,
            bootstrap=settings.kafka_bootstrap_servers,
        )
    except devstack.StackError as exc:
        print(f"ingester dev: {exc}", file=sys.stderr)
        return 1
    children: list[subprocess.Popen[bytes]] = []
    try:
        env = stack_env(settings, stack)
        write_env_file(DEV_ENV_FILE, env)
        effective = load()  # the file just written, under the real environment
        asyncio.run(_prepare(effective, seed_demo=stack.postgres is not None))
        children = [_spawn("serve"), _spawn("consume")]
        CHILDREN_PID_FILE.write_text(" ".join(str(c.pid) for c in children))
        _wait_until_serving(effective, children)
        print(_banner(effective, env), flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [c for c in children if c.returncode not in (None, 0)]
        if failed:
            print(f"ingester dev: a child exited with code {failed[0].returncode}", file=sys.stderr)
            return 1
        return 0
    except (_Stop, KeyboardInterrupt):
        return 0
    except (migrate.MigrationError, migrate.DatabaseUnreachable, devstack.StackError) as exc:
        print(f"ingester dev: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _stop_children(children, settings.shutdown_deadline_s + 5)
        stack.stop()
        print("stopped", flush=True)
