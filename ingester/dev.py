"""``ingester dev``: the whole service on one laptop, no Docker, no installed servers.

Starts the embedded PostgreSQL (data kept in ``.dev/pgdata``) and the embedded broker (or
uses ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS``), migrates, creates the topics, writes
``.dev/stack.env`` (so ``ingester send-sample`` in another terminal finds the servers and the
dev secrets), then runs ``ingester serve``, ``ingester consume`` and ``ingester console`` as child
processes until Ctrl-C or SIGTERM, and stops everything it started. One run per clone: a
second one refuses, naming the first (:mod:`ingester.devguard`); a port another program
holds is named, or, left at its default, replaced by a free one.

A child that exits while starting (before ingest serves) stops it, named. Once running it
supervises: a crashed child is named and restarted with backoff (:mod:`ingester.supervise`);
a dead PostgreSQL is restarted on its data; a dead broker is restarted empty (its storage is
memory: what it held is lost, which it says), the topics are created again and both
children restarted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from core import devstack, migrate
from core.settings import DEV_ENV_FILE, SETTINGS, Settings, load, read_env_file
from core.topics import create_topics
from ingester.devguard import RunLock, choose_ports, dev_ports
from ingester.output import say
from ingester.rcsync import STANDIN_PORT
from ingester.samples import PROVIDERS, SAMPLE_REVENUECAT_ID
from ingester.supervise import Child, GaveUp, Supervisor, describe_exit

STATE_DIR = DEV_ENV_FILE.parent
CHILDREN_PID_FILE = STATE_DIR / "children.pid"
LOCK_FILE = STATE_DIR / "dev.lock"
POLL_S = 0.2

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
_SECRET_FIELDS = {s.variable: s.attribute for s in SETTINGS if s.variable in DEV_SECRETS}
# `ingester dev --rc-sync`: rc-sync's key, and the stand-in of RevenueCat it calls instead of
# RevenueCat (unless REVENUECAT_API_URL says otherwise).
RC_SYNC_DEV_KEY = "dev-revenuecat-api-key"
RC_SYNC_STANDIN_URL = f"http://127.0.0.1:{STANDIN_PORT}/v1"


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def console_token(settings: Settings) -> str:
    """The console's token: the one set, else the one an earlier run wrote, else a new one
    (random: the console shows personal data, a well-known token would not do)."""
    if settings.console_token:
        return settings.console_token
    if DEV_ENV_FILE.is_file():
        earlier = read_env_file(DEV_ENV_FILE).get("CONSOLE_TOKEN")
        if earlier:
            return earlier
    return secrets.token_urlsafe(18)


def stack_env(
    settings: Settings,
    stack: devstack.Stack,
    ports: dict[str, int] | None = None,
    *,
    rc_sync: bool = False,
) -> dict[str, str]:
    """The variables the child processes and later CLI calls need (real env still wins)."""
    env = {
        "DATABASE_URL": stack.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
        "ENVIRONMENT": settings.environment,
        "PORT": str(settings.port),
        "CONSUMER_METRICS_PORT": str(settings.consumer_metrics_port),
        "CONSOLE_PORT": str(settings.console_port),
        **{name: str(port) for name, port in (ports or {}).items()},
        "CONSOLE_TOKEN": console_token(settings),
    }
    if stack.broker is not None:
        env["KAFKA_IDEMPOTENT_PRODUCER"] = "false"  # Tansu rejects InitProducerId
    for name, value in DEV_SECRETS.items():
        if not getattr(settings, _SECRET_FIELDS[name]):
            env[name] = value
    if rc_sync:
        env.update(rc_sync_env(settings))
    return env


def rc_sync_env(settings: Settings) -> dict[str, str]:
    env = {}
    if not settings.revenuecat_api_key:
        env["REVENUECAT_API_KEY"] = RC_SYNC_DEV_KEY
    if settings.revenuecat_api_url == Settings().revenuecat_api_url:
        env["REVENUECAT_API_URL"] = RC_SYNC_STANDIN_URL
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


def _write_pids(children: Sequence[Child]) -> None:
    """One ``name pid`` line per child, rewritten on every restart."""
    lines = [f"{c.name} {c.proc.pid}" for c in children if c.proc is not None]
    CHILDREN_PID_FILE.write_text("\n".join(lines) + "\n")


def _say(message: str) -> None:
    say("dev", message)


async def _prepare(settings: Settings, *, seed_demo: bool) -> None:
    await migrate.migrate(settings.require_database_url(), migrate.migrations_dir(settings))
    if seed_demo:
        from ingester.devseed import seed

        await seed(settings.require_database_url())
    await create_topics(settings)


def _console_url(settings: Settings) -> str:
    return f"http://{settings.console_host}:{settings.console_port}"


def _banner(settings: Settings, env: dict[str, str], *, rc_sync: bool = False) -> str:
    base = f"http://127.0.0.1:{settings.port}"
    samples = " | ".join(PROVIDERS)
    lines = [
        "",
        "webhook ingester is running (Ctrl-C stops everything)",
        f"  ingest:     {base}  (healthz {base}/healthz, metrics {base}/metrics)",
        f"  consumers:  metrics http://127.0.0.1:{settings.consumer_metrics_port}/metrics",
        f"  console:    {_console_url(settings)}  (token {env['CONSOLE_TOKEN']})",
        *_rc_sync_banner(settings, rc_sync),
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


def _rc_sync_banner(settings: Settings, rc_sync: bool) -> list[str]:
    if not rc_sync:
        return []
    customer = f"{settings.revenuecat_api_url}/subscribers/{SAMPLE_REVENUECAT_ID}"
    return [
        f"  rc-sync:    metrics http://127.0.0.1:{settings.rc_sync_metrics_port}/metrics,"
        f" calling {settings.revenuecat_api_url}",
        f"              what it set: curl -H 'Authorization: Bearer {RC_SYNC_DEV_KEY}' {customer}",
    ]


def _spawn(verb: str, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    # New session: Ctrl-C reaches only this process, which then stops the children in order.
    # The ports chosen win over the environment's (a default that was taken moved).
    env = {**os.environ, **{name: str(port) for name, port in ports.items()}}
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "ingester.cli", *verb.split()],
        start_new_session=True,
        env=env,
    )


def children(rc_sync: bool) -> list[Child]:
    """What ``ingester dev`` supervises; rc-sync and its stand-in only when asked for."""
    found = [Child("ingest", "serve"), Child("consumer", "consume"), Child("console", "console")]
    if rc_sync:
        found += [Child("revenuecat-standin", "standin revenuecat"), Child("rc-sync", "rc-sync")]
    return found


def _wait_until_serving(settings: Settings, supervisor: Supervisor, timeout: float = 60.0) -> None:
    """Block until ingest and the console answer /healthz, so the banner never invites a
    refused request."""
    for url in (f"http://127.0.0.1:{settings.port}/healthz", f"{_console_url(settings)}/healthz"):
        _wait_for(url, supervisor, timeout)


def _wait_for(url: str, supervisor: Supervisor, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Before the banner nothing was accepted yet, and a child that cannot even start
        # (a port in use, a bad setting) would not recover by being restarted.
        for child in supervisor.children:
            if child.proc is not None and (code := child.proc.poll()) is not None:
                raise devstack.StackError(
                    f"{child.name} {describe_exit(code)} while starting (its output is above)"
                )
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise devstack.StackError(f"{url} did not answer within {timeout:.0f} s")


def _watch_servers(stack: devstack.Stack, settings: Settings, supervisor: Supervisor) -> None:
    """Bring back an embedded server that died under us (killed, OOM)."""
    if stack.postgres is not None and not stack.postgres.running():
        _say(
            "PostgreSQL stopped unexpectedly; restarting it on its data"
            f" ({stack.postgres.data_dir}), nothing is lost"
        )
        stack.postgres.start_sync()
    broker = stack.broker
    if broker is not None and (code := broker.exit_code()) is not None:
        _say(
            f"the Kafka broker {describe_exit(code)}. It is the embedded Tansu broker with"
            " in-memory storage, so everything it held is lost: the records the consumers had"
            " not applied yet (even those ingest answered 2xx) and the consumer offsets. The"
            " database is kept. Restarting the broker empty on"
            f" {broker.bootstrap}, creating the topics and restarting ingest and the consumer."
        )
        broker.start_sync()
        asyncio.run(create_topics(settings))
        supervisor.restart_all(settings.shutdown_deadline_s + 5)
        pids = ", ".join(f"{name} pid {pid}" for name, pid in supervisor.pids().items())
        _say(f"the broker is back with empty topics; restarted {pids}")


def run_dev(settings: Settings, *, rc_sync: bool = False) -> int:
    lock = RunLock(LOCK_FILE)
    try:
        lock.acquire(f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}")
        # Holding the lock, children a pid file names are a dead run's: they go first, or
        # their ports would look taken.
        _kill_stale_children()
        ports, moved = choose_ports(dev_ports(settings))
    except devstack.StackError as exc:
        lock.release()
        _say(str(exc))
        return 1
    try:
        return _run(settings, lock, ports, moved, rc_sync=rc_sync)
    finally:
        lock.release()


def _run(
    settings: Settings,
    lock: RunLock,
    ports: dict[str, int],
    moved: list[str],
    *,
    rc_sync: bool,
) -> int:
    for line in moved:
        _say(line)
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        stack = devstack.start_stack(
            STATE_DIR,
            database_url=settings.database_url,
            bootstrap=settings.kafka_bootstrap_servers,
        )
    except devstack.StackError as exc:
        _say(str(exc))
        return 1
    supervisor = Supervisor(
        children(rc_sync),
        spawn=lambda verb: _spawn(verb, ports),
        say=_say,
        on_spawn=_write_pids,
    )
    try:
        env = stack_env(settings, stack, ports, rc_sync=rc_sync)
        write_env_file(DEV_ENV_FILE, env)
        # The file just written, under the real environment, with the ports chosen.
        effective = load().with_overrides(
            port=ports["PORT"],
            consumer_metrics_port=ports["CONSUMER_METRICS_PORT"],
            console_port=ports["CONSOLE_PORT"],
        )
        asyncio.run(_prepare(effective, seed_demo=stack.postgres is not None))
        supervisor.start_all()
        _wait_until_serving(effective, supervisor)
        lock.describe(
            f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}, ingest"
            f" http://127.0.0.1:{effective.port}, console {_console_url(effective)}"
        )
        print(_banner(effective, env, rc_sync=rc_sync), flush=True)
        while True:
            time.sleep(POLL_S)
            _watch_servers(stack, effective, supervisor)
            supervisor.check()
    except (_Stop, KeyboardInterrupt):
        return 0
    except GaveUp as exc:
        _say(str(exc))
        return 1
    except (migrate.MigrationError, migrate.DatabaseUnreachable, devstack.StackError) as exc:
        _say(str(exc))
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        supervisor.stop_all(settings.shutdown_deadline_s + 5)
        CHILDREN_PID_FILE.unlink(missing_ok=True)
        stack.stop()
        print("stopped", flush=True)
