"""The CLI contract (docs/contract.md §7): exit 2 on bad usage, 1 on failure, and then exactly
one line on stderr, ``ingester VERB: ...``, never a traceback. These cases need no server:
the failures point at closed ports; tests/integration/test_cli_failures.py has the rest."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.topics import STREAMS
from core.devstack import free_port
from core.settings import ENV_VARS, find_dev_env_file
from ingester import samples
from ingester.cli import build_parser
from ingester.report import FORMATS

CLOSED = free_port()  # nothing listens there
CLOSED_DB = f"postgresql://u@127.0.0.1:{CLOSED}/db"
CLOSED_KAFKA = f"127.0.0.1:{CLOSED}"
VERB_GROUPS = {
    "topics",
    "dlq",
    "pending",
    "inbox",
    "experiments",
    "standin",
}  # verbs with an action


def run_cli(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ingester ARGV`` in a clean environment: no contract variable is inherited, so only
    ``env`` (and a .dev/stack.env the CLI finds) configures it."""
    clean = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return subprocess.run(
        [sys.executable, "-m", "ingester.cli", *argv],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["frobnicate"], id="unknown verb"),
        pytest.param([], id="no verb"),
        pytest.param(["--bogus"], id="unknown option"),
        pytest.param(["topics"], id="no action"),
        pytest.param(["dev", "--bogus"], id="dev with an unknown option"),
        pytest.param(["serve", "extra"], id="serve with an argument"),
        pytest.param(["consume", "--only", "nope"], id="unknown stream"),
        pytest.param(["send-sample", "paypal"], id="unknown sample"),
        pytest.param(["dlq", "replay", "--limit", "0"], id="limit below one"),
        pytest.param(["dlq", "list", "--limit", "ten"], id="limit not a number"),
        pytest.param(["inbox", "prune", "--older-than-days", "0"], id="days below one"),
        pytest.param(["experiments", "report"], id="report without a name"),
        pytest.param(["experiments", "report", "x", "--format", "pdf"], id="unknown format"),
        pytest.param(["replay", "--source", "kit"], id="replay without --since"),
        pytest.param(["replay", "--source", "paypal", "--since", "2026-05-01"], id="no source"),
        pytest.param(["replay", "--source", "kit", "--since", "soon"], id="since not a time"),
        pytest.param(["console", "--port", "1"], id="console with an option"),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv: list[str], tmp_path: Path) -> None:
    result = run_cli(*argv, cwd=tmp_path)

    assert result.returncode == 2
    assert one_line(result).startswith("ingester")
    assert "(see --help)" in result.stderr


def test_consume_only_names_the_streams_of_the_registry(tmp_path: Path) -> None:
    result = run_cli("consume", "--only", "kit,nope", cwd=tmp_path)

    assert result.returncode == 2
    assert f"unknown stream 'nope'; choose from {', '.join(STREAMS)}" in one_line(result)


def test_send_sample_offers_every_sample_provider() -> None:
    (sample,) = (p for name, p in _parsers(build_parser()) if name == "ingester send-sample")
    (provider,) = (a for a in sample._actions if a.dest == "provider")

    assert tuple(provider.choices or ()) == samples.PROVIDERS


def test_report_offers_the_formats_the_report_renders() -> None:
    # The parser keeps its own copy so that starting the CLI does not load the database
    # driver; this keeps the two equal.
    (report,) = (p for name, p in _parsers(build_parser()) if name == "ingester experiments report")
    (fmt,) = (a for a in report._actions if a.dest == "format")

    assert tuple(fmt.choices or ()) == FORMATS


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        pytest.param(["migrate"], {"DATABASE_URL": CLOSED_DB}, f"127.0.0.1:{CLOSED}", id="migrate"),
        pytest.param(
            ["pending", "list"], {"DATABASE_URL": CLOSED_DB}, "Connect call failed", id="pending"
        ),
        pytest.param(
            ["pending", "retry"], {"DATABASE_URL": CLOSED_DB}, "Connect call failed", id="retry"
        ),
        pytest.param(
            ["inbox", "prune"], {"DATABASE_URL": CLOSED_DB}, "Connect call failed", id="prune"
        ),
        pytest.param(
            ["replay", "--source", "kit", "--since", "2026-05-01"],
            {"DATABASE_URL": CLOSED_DB},
            "Connect call failed",
            id="replay",
        ),
        pytest.param(
            ["experiments", "report", "x"],
            {"DATABASE_URL": CLOSED_DB},
            f"cannot connect to database at 127.0.0.1:{CLOSED}",
            id="report",
        ),
        pytest.param(
            ["dlq", "list"], {"KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA}, "bootstrap", id="dlq list"
        ),
        pytest.param(
            ["dlq", "replay", "--dry-run"],
            {"KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA},
            "bootstrap",
            id="dlq replay",
        ),
        pytest.param(
            ["topics", "create"],
            {"KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA},
            f"cannot create topics on {CLOSED_KAFKA}",
            id="topics create",
        ),
        pytest.param(
            ["consume"],
            {"DATABASE_URL": "", "KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA},
            "DATABASE_URL is not set",
            id="consume without a database",
        ),
        pytest.param(
            ["send-sample", "events"],
            {"EVENTS_API_KEY": "k", "PORT": str(CLOSED)},
            f"cannot reach http://127.0.0.1:{CLOSED}/events",
            id="send-sample to a closed port",
        ),
        pytest.param(
            ["send-sample", "kit"],
            {"KIT_WEBHOOK_SECRET": ""},
            "run `make dev` first or set KIT_WEBHOOK_SECRET",
            id="send-sample without its secret",
        ),
        pytest.param(
            ["migrate"],
            {"DATABASE_URL": ""},
            "DATABASE_URL is not set",
            id="migrate without a database",
        ),
        pytest.param(
            ["pending", "retry"],
            {"DATABASE_URL": ""},
            "DATABASE_URL is not set (",
            id="a consumer verb without a database",
        ),
        pytest.param(
            ["dlq", "list"],
            {"KAFKA_BOOTSTRAP_SERVERS": ""},
            "KAFKA_BOOTSTRAP_SERVERS is not set (",
            id="a DLQ verb without a broker",
        ),
        pytest.param(
            ["rc-sync"],
            {
                "DATABASE_URL": CLOSED_DB,
                "KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA,
                "REVENUECAT_API_KEY": "",
            },
            "REVENUECAT_API_KEY is not set, so rc-sync is off",
            id="rc-sync without its key",
        ),
        pytest.param(
            ["rc-sync", "--dry-run"],
            {"DATABASE_URL": CLOSED_DB},
            "Connect call failed",
            id="rc-sync dry run",
        ),
        pytest.param(
            ["pending", "list"],
            {"PORT": "eighty"},
            "configuration error: PORT must be an integer",
            id="malformed variable",
        ),
    ],
)
def test_failure_exits_1_with_one_line(
    argv: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    result = run_cli(*argv, cwd=tmp_path, env=env)

    assert result.returncode == 1
    line = one_line(result)
    verb = " ".join(argv[:2] if argv[0] in VERB_GROUPS else argv[:1])
    assert line.startswith(f"ingester {verb}: ")
    assert expected in line
    assert "Traceback" not in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # the interface the server binds
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_taken_port_is_one_line(taken_port: int, tmp_path: Path) -> None:
    env = {"PORT": str(taken_port), "KAFKA_BOOTSTRAP_SERVERS": CLOSED_KAFKA}

    result = run_cli("serve", cwd=tmp_path, env=env)

    assert result.returncode == 1
    assert one_line(result) == (
        f"ingester serve: cannot listen on port {taken_port}: Address already in use"
    )


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.startswith("ingester ") and result.stdout.split()[1][0].isdigit()


def _parsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_argument_has_help() -> None:
    undocumented = [
        f"{prog} {action.dest}"
        for prog, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]

    assert undocumented == []


def _project(root: Path, *, with_dev: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    if with_dev:
        (root / ".dev").mkdir()
    return root


@pytest.mark.parametrize(
    ("start", "source_has_dev", "expected"),
    [
        pytest.param("proj", False, "proj", id="the project root"),
        pytest.param("proj/ingest/providers", False, "proj", id="a folder inside the project"),
        pytest.param("proj/sub", False, "proj/sub", id="the nearest project wins"),
        pytest.param("elsewhere", True, "source", id="outside: the editable source tree"),
        pytest.param("elsewhere", False, None, id="outside, no dev stack anywhere"),
        pytest.param("bare/inner", False, None, id="a project without .dev"),
        pytest.param("scratch/sub", True, "scratch", id="where ingester dev ran, no project"),
    ],
)
def test_find_dev_env_file(
    start: str, source_has_dev: bool, expected: str | None, tmp_path: Path
) -> None:
    _project(tmp_path / "proj")
    _project(tmp_path / "proj" / "sub")
    (tmp_path / "proj" / "ingest" / "providers").mkdir(parents=True)
    _project(tmp_path / "bare", with_dev=False)
    (tmp_path / "bare" / "inner").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "scratch" / ".dev").mkdir(parents=True)
    (tmp_path / "scratch" / ".dev" / "stack.env").write_text("PORT=1\n")
    (tmp_path / "scratch" / "sub").mkdir()
    source = _project(tmp_path / "source", with_dev=source_has_dev)

    found = find_dev_env_file(tmp_path / start, source_tree=source)

    assert found == (tmp_path / expected / ".dev" / "stack.env" if expected else None)


def test_the_cli_reads_the_dev_env_file_from_a_nested_folder(tmp_path: Path) -> None:
    project = _project(tmp_path / "clone")
    (project / ".dev" / "stack.env").write_text(f"KIT_WEBHOOK_SECRET=dev-kit\nPORT={CLOSED}\n")
    nested = project / "docs" / "deep"
    nested.mkdir(parents=True)

    result = run_cli("send-sample", "kit", cwd=nested)

    # Signed with the file's secret and sent to the file's port: nothing listens there.
    assert result.returncode == 1
    assert one_line(result).startswith(
        f"ingester send-sample: cannot reach http://127.0.0.1:{CLOSED}/webhooks/kit"
    )


def test_a_missing_secret_says_where_it_looked(tmp_path: Path) -> None:
    project = _project(tmp_path / "clone")
    (project / ".dev" / "stack.env").write_text("EVENTS_API_KEY=k\n")

    result = run_cli("send-sample", "kit", cwd=project, env={"KIT_WEBHOOK_SECRET": ""})

    assert result.returncode == 1
    assert one_line(result) == (
        "ingester send-sample: cannot sign a kit sample: KIT_WEBHOOK_SECRET is not set"
        f" (not in {project / '.dev' / 'stack.env'} either;"
        " run `make dev` first or set KIT_WEBHOOK_SECRET)"
    )


def test_a_replay_window_ending_before_it_starts_is_bad_usage(tmp_path: Path) -> None:
    result = run_cli(
        "replay", "--source", "app", "--since", "2026-05-02", "--until", "2026-05-01", cwd=tmp_path
    )

    assert result.returncode == 2
    assert one_line(result) == "ingester replay: --until must be later than --since"
