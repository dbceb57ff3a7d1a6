"""The settings tables of the docs are the declarations in core/settings.py, rendered.

Every table of variables in README.md and docs/*.md sits between
``<!-- settings: group ... -->`` and ``<!-- /settings -->`` and equals what
``python -m ingester.settings_tables --markdown group ...`` prints (``--write FILE`` refills it);
docs/contract.md §3 lists every variable, docs/consumers.md every consumer group. Defaults
quoted in the prose of the docs match the declarations too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import MiB, marked_groups
from core.settings import GROUPS, SETTINGS, fill_settings_tables

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
TABLE_HEADER = "| variable | meaning | default |"
CONSUMER_GROUPS = ["consumers", "pending", "poison", "bounds", "retention"]
# docs/benchmarks.md quotes the settings of past runs, not the defaults.
PROSE_DOCS = [p for p in DOCS if p.name not in ("README.md", "benchmarks.md")]
# "`POISON_MIN_DEAD` (3)", "`SHUTDOWN_DEADLINE_S` (default 20 s)", "`PENDING_BACKOFF_MAX_S` (6 h)"
QUOTED_DEFAULT = re.compile(
    r"`([A-Z][A-Z0-9_]+)`(?: times)? \((?:default )?([0-9][0-9,]*(?:\.[0-9]+)?)(?: (s|ms|h|MiB))?\)"
)
UNIT = {None: 1, "s": 1, "ms": 1, "h": 3600, "MiB": MiB}


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_generated_tables_equal_the_declarations(path: Path) -> None:
    text = path.read_text()

    assert fill_settings_tables(text) == text, (
        f"{name(path)}: a settings table differs from core/settings.py;"
        f" run `python -m ingester.settings_tables --write {name(path)}`"
    )


@pytest.mark.parametrize("path", DOCS, ids=name)
def test_every_table_of_variables_is_generated(path: Path) -> None:
    inside = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("<!-- settings:"):
            inside = True
        elif line.startswith("<!-- /settings -->"):
            inside = False
        elif line.startswith(TABLE_HEADER):
            assert inside, f"{name(path)}:{number}: a hand-written settings table"


def test_the_contract_lists_every_variable_once() -> None:
    listed = [
        g for groups in marked_groups((ROOT / "docs/contract.md").read_text()) for g in groups
    ]

    assert sorted(listed) == sorted(g.name for g in GROUPS)


def test_the_consumers_page_lists_the_consumer_settings() -> None:
    listed = [
        g for groups in marked_groups((ROOT / "docs/consumers.md").read_text()) for g in groups
    ]

    assert listed == CONSUMER_GROUPS


def test_the_readme_shows_the_servers_and_secrets() -> None:
    assert marked_groups((ROOT / "README.md").read_text()) == [["servers", "endpoints"]]


def test_every_variable_is_in_a_group_of_the_docs() -> None:
    assert {s.group for s in SETTINGS} == {g.name for g in GROUPS}


def quoted_defaults() -> list[tuple[str, str, float]]:
    """(where, variable, value) for each default the prose quotes."""
    return [
        (f"{name(path)}: {m[0]}", m[1], float(m[2].replace(",", "")) * UNIT[m[3]])
        for path in PROSE_DOCS
        for m in QUOTED_DEFAULT.finditer(path.read_text())
    ]


def test_defaults_quoted_in_the_prose_are_found() -> None:
    assert len(quoted_defaults()) >= 20


@pytest.mark.parametrize(
    ("variable", "value"), [pytest.param(v, x, id=where) for where, v, x in quoted_defaults()]
)
def test_defaults_quoted_in_the_prose_match(variable: str, value: float) -> None:
    defaults = {s.variable: s.default for s in SETTINGS}

    assert variable in defaults, "no such variable"
    assert defaults[variable] == value
