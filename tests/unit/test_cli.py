"""The CLI contract: exit 2 on bad usage, 1 on failure, always one line on stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.devstack import free_port


def run_cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingester.cli", *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["frobnicate"], id="unknown verb"),
        pytest.param([], id="no verb"),
        pytest.param(["consume", "--only", "nope"], id="unknown source"),
        pytest.param(["send-sample", "paypal"], id="unknown sample"),
        pytest.param(["dlq", "replay", "--limit", "0"], id="limit below one"),
        pytest.param(["experiments", "report", "x", "--format", "pdf"], id="unknown format"),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], tmp_path: Path) -> None:
    result = run_cli(*argv, cwd=tmp_path)

    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("ingester")


def test_migrate_against_unreachable_database_names_the_host(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = run_cli(
        "migrate", cwd=tmp_path, env={"DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/db"}
    )

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"127.0.0.1:{port}" in lines[0]


def test_missing_database_url_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "ingester.cli", "migrate"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.strip() == "ingester: configuration error: DATABASE_URL is not set"
