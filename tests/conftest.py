"""Session-wide real servers and per-test isolation.

The embedded PostgreSQL and Tansu broker start once per session (or the servers named by
DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS are used). Each test gets its own database, cloned
from a migrated template, and its own topic prefix with every contract topic created.

The servers start through ``core.devstack`` exactly as ``make dev`` does, so a run as root
uses the same arrangement (PostgreSQL as ``nobody``, its data under a folder of its own,
see ``core/pghome.py``); ``devstack.remove_dir`` removes that data with the state folder.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings

from core import devstack, migrate
from core.settings import Settings, load
from core.topics import create_topics

# XDG_RUNTIME_DIR unset makes platformdirs warn, which filterwarnings=error would turn into a
# failure in any library that asks for it.
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

# The property tests draw new examples on every run, which is how they find edge cases; CI
# (HYPOTHESIS_PROFILE=ci in .ci/run) draws the same ones every time, so a run it passed passes
# again. A failure prints the example that reproduces it.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TEST_PARTITIONS = 3
ENV_SETTINGS = load(env_file=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="the console's browser test saves a screenshot of each page in DIR (docs/console)",
    )


@dataclass(frozen=True, slots=True)
class SessionStack:
    admin_dsn: str
    bootstrap: str
    template: str

    def dsn_for(self, database: str) -> str:
        base, _, query = self.admin_dsn.partition("?")
        root = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
        return f"{root}/{database}" + (f"?{query}" if query else "")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin(stack: SessionStack, statement: str) -> None:
    admin = await asyncpg.connect(stack.admin_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(stack: SessionStack, *, template: str | None) -> AsyncIterator[str]:
    """A database of its own for one test, dropped afterwards (a clone of ``template``)."""
    name = f"ingester_t_{uuid.uuid4().hex[:12]}"
    clone = f" TEMPLATE {_quote(template)}" if template else ""
    await _admin(stack, f"CREATE DATABASE {_quote(name)}{clone}")
    try:
        yield stack.dsn_for(name)
    finally:
        await _admin(stack, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


@pytest.fixture(scope="session")
def _servers() -> Iterator[devstack.Stack]:
    state = Path(tempfile.mkdtemp(prefix="ingester-test-"))
    stack = devstack.start_stack(
        state,
        database_url=ENV_SETTINGS.database_url,
        bootstrap=ENV_SETTINGS.kafka_bootstrap_servers,
        fast=True,
    )
    try:
        yield stack
    finally:
        stack.stop()
        devstack.remove_dir(state)


@pytest.fixture(scope="session")
async def stack(_servers: devstack.Stack) -> AsyncIterator[SessionStack]:
    template = f"ingester_tpl_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_servers.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {_quote(template)}")
        session = SessionStack(_servers.database_url, _servers.bootstrap, template)
        await migrate.migrate(session.dsn_for(template), migrate.default_dir())
        yield session
        await admin.execute(f"DROP DATABASE IF EXISTS {_quote(template)} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def database_url(stack: SessionStack) -> AsyncIterator[str]:
    async with scratch_database(stack, template=stack.template) as dsn:
        yield dsn


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=5) as created:
        yield created


@pytest.fixture
async def topic_prefix(stack: SessionStack) -> str:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    await create_topics(
        Settings(
            kafka_bootstrap_servers=stack.bootstrap,
            topic_prefix=prefix,
            topic_partitions=TEST_PARTITIONS,
        )
    )
    return prefix


def make_settings(database_url: str | None, bootstrap: str | None, prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        kafka_idempotent_producer=False,
        topic_prefix=prefix,
        environment="dev",
        topic_partitions=TEST_PARTITIONS,
        consumer_group=f"test-{prefix.rstrip('.')}",
        consumer_batch_wait_ms=50,
        shutdown_deadline_s=5.0,
        consumer_metrics_port=0,
        revenuecat_authorization="Bearer test-rc-auth",
        revenuecat_webhook_secret="test-rc-hmac",
        klaviyo_webhook_secret="test-klaviyo-secret",
        klaviyo_flow_token="test-flow-token",
        kit_webhook_secrets=("test-kit-old", "test-kit-new"),
        kit_legacy_token="test-kit-legacy",
        events_api_key="test-events-key",
    )


@pytest.fixture
def settings(stack: SessionStack, database_url: str, topic_prefix: str) -> Settings:
    return make_settings(database_url, stack.bootstrap, topic_prefix)


@pytest.fixture
async def private_broker() -> AsyncIterator[devstack.TansuBroker]:
    """A broker only this test uses, so it may stop and restart it."""
    broker = devstack.TansuBroker()
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
async def private_postgres() -> AsyncIterator[devstack.EmbeddedPostgres]:
    """A migrated PostgreSQL server only this test uses, so it may stop and restart it."""
    data = Path(tempfile.mkdtemp(prefix="ingester-pg-"))
    server = devstack.EmbeddedPostgres(data / "pgdata", fast=True)
    await server.start()
    try:
        await migrate.migrate(server.dsn, migrate.default_dir())
        yield server
    finally:
        await server.stop()
        await asyncio.to_thread(devstack.remove_dir, data)


@pytest.fixture
async def empty_database_url(stack: SessionStack) -> AsyncIterator[str]:
    """A database with nothing in it (not even the migrations)."""
    async with scratch_database(stack, template=None) as dsn:
        yield dsn
