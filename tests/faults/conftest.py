"""The fault suite's own fixtures: a seed, and a harness of private servers per scenario.

Not collected by ``make test`` (see pyproject); run with ``make test-faults``. The seed is
printed at the start of every scenario; ``FAULTS_SEED=<n> make test-faults`` replays it.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.settings import load
from tests.faults import harness as harness_module
from tests.faults.logscan import LOG_DIRS

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

REAL = load(env_file=None)  # DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS, when set


@pytest.fixture(scope="session")
def base_seed() -> int:
    raw = os.environ.get("FAULTS_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(2**31)
    print(f"\nFAULTS_SEED={seed}")
    return seed


@pytest.fixture
def seed(base_seed: int, request: pytest.FixtureRequest) -> int:
    """Per scenario, derived from the session seed and the test's name (stable per run)."""
    derived = random.Random(f"{base_seed}/{request.node.name}").randrange(2**31)
    print(f"\n{request.node.name}: FAULTS_SEED={base_seed} (scenario seed {derived})")
    return derived


@pytest.fixture(scope="session")
def faults_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ingester-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def harness(
    faults_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[harness_module.Harness]:
    workdir = faults_dir / request.node.name
    workdir.mkdir()
    prefix = f"f{uuid.uuid4().hex[:10]}."
    started = await harness_module.start(workdir, REAL, prefix)
    LOG_DIRS.append(started.log_dir)
    try:
        yield started
    finally:
        started.close()


def needs_private_postgres() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        bool(REAL.database_url), reason="DATABASE_URL names a real server: it cannot be frozen"
    )


def needs_private_broker() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        bool(REAL.kafka_bootstrap_servers),
        reason="KAFKA_BOOTSTRAP_SERVERS names a real broker: it cannot be stopped",
    )
