"""The Dockerfile cannot be built here, so its key properties are read from the file:
multi-stage on a slim Python, no dev extra, non-root, `ingester` as the entry point, the
migrations inside the image, and a build context that holds exactly what it copies."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass(slots=True)
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    parsed = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        parsed.append((keyword.upper(), rest.strip()))
    return parsed


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            global_args[arg] = default
        elif keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, alias))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse((ROOT / "Dockerfile").read_text())[1]


def env_of(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in stage.args("ENV"):
        for word in shlex.split(rest):
            key, _, value = word.partition("=")
            values[key] = value
    return values


def copies(stage: Stage) -> list[tuple[list[str], str, list[str]]]:
    """(options, destination, sources) of every COPY."""
    result = []
    for rest in stage.args("COPY"):
        words = rest.split()
        options = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        result.append((options, paths[-1], paths[:-1]))
    return result


def test_is_multi_stage_on_a_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", stage.base), stage.base
    runtime = stages[-1]
    assert any("--from=" + str(stages[0].name) in o for o, _, _ in copies(runtime))


def test_installs_the_package_without_the_dev_extra(stages: list[Stage]) -> None:
    runs = [run for stage in stages for run in stage.args("RUN")]

    assert any(re.search(r"pip install( [\w=-]+)* \.(\s|&|$)", run) for run in runs)
    assert not any(re.search(r"\[dev\]|--extra|requirements-dev|pytest", run) for run in runs)
    # The runtime stage installs nothing: it copies the finished virtualenv.
    assert not any("pip install" in run for run in stages[-1].args("RUN"))


def test_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].args("USER")

    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0


def test_entrypoint_is_the_ingester_command(stages: list[Stage]) -> None:
    runtime = stages[-1]

    assert json.loads(runtime.args("ENTRYPOINT")[-1]) == ["ingester"]
    assert json.loads(runtime.args("CMD")[-1]) == ["serve"]


def test_ships_the_migrations_where_migrate_looks(stages: list[Stage]) -> None:
    runtime = stages[-1]
    migrations_dir = env_of(runtime)["MIGRATIONS_DIR"]

    assert any(
        sources == ["sql/"] and destination.rstrip("/") == migrations_dir
        for _, destination, sources in copies(runtime)
    )
    assert (ROOT / "sql").is_dir()


def test_build_stage_copies_every_package_the_project_installs(stages: list[Stage]) -> None:
    # `pip install .` only packages what was copied: a missing package is an image that
    # builds and then fails at its first import.
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in include["packages"]["find"]["include"]}
    copied = {source.rstrip("/") for _, _, sources in copies(stages[0]) for source in sources}

    assert packages <= copied, f"not copied into the build stage: {sorted(packages - copied)}"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's patterns: `*` and `?` stay within one path element, `**` spans any."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """The last pattern matching the path or one of its parents decides; `!` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for pattern in patterns:
        regex = pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            verdict = not pattern.startswith("!")
    return verdict


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_build_context_holds_every_copied_source(
    stages: list[Stage], ignore_patterns: list[str]
) -> None:
    sources = [
        source
        for stage in stages
        for options, _, paths in copies(stage)
        if not any(o.startswith("--from") for o in options)
        for source in paths
    ]

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
        assert not ignored(source.rstrip("/"), ignore_patterns), (
            f"COPY {source}: .dockerignore drops it"
        )


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(".venv", id="virtualenv"),
        pytest.param(".git", id="git history"),
        pytest.param(".dev", id="dev stack state"),
        pytest.param("tests", id="tests"),
        pytest.param("bench", id="bench"),
        pytest.param(".env", id="local env file"),
        pytest.param("ingester/__pycache__/cli.cpython-311.pyc", id="bytecode caches"),
    ],
)
def test_build_context_leaves_out(path: str, ignore_patterns: list[str]) -> None:
    assert ignored(path, ignore_patterns)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("ingester/cli.py", id="package source"),
        pytest.param("sql/0001_init.sql", id="migration"),
        pytest.param("pyproject.toml", id="project metadata"),
    ],
)
def test_build_context_keeps(path: str, ignore_patterns: list[str]) -> None:
    assert not ignored(path, ignore_patterns)
