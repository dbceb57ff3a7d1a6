"""The contract lives in the repository: docs/contract.md keeps its section numbering, every
citation of it points at a section that exists, and nothing sends a reader outside the repo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "docs" / "contract.md"
SECTIONS = [str(n) for n in range(1, 10)] + [f"4.{n}" for n in range(1, 8)]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = ("SPEC" + ".md", ".." + "/shared", "SPEC" + " section", "SPEC" + " 4.")
SKIPPED_DIRS = {"__pycache__", "build", "dist"}
_NAMED_FILES = {"Makefile", "Dockerfile", "run", ".gitignore", ".dockerignore"}
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".sql", ".txt", ".json", ".cfg", ".sh"}
CITATION = re.compile(r"docs/contract\.md §(\d+(?:\.\d+)?)")


def repo_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") and p not in (".ci",) for p in parts[:-1]):
            continue  # .git, .venv, .dev and the tool caches
        if any(p in SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in _NAMED_FILES):
            yield path


def contract_sections() -> set[str]:
    headings = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", CONTRACT.read_text(), re.MULTILINE)
    return set(headings)


def test_contract_keeps_its_section_numbering() -> None:
    assert sorted(contract_sections()) == sorted(SECTIONS)


def test_files_are_scanned() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in repo_files()}

    assert {"README.md", "ingester/cli.py", "k8s/base/kafkatopics.yaml", ".ci/run"} <= names


@pytest.mark.parametrize("needle", OUTSIDE)
def test_nothing_points_outside_the_repo(needle: str) -> None:
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in repo_files()
        if needle in p.read_text(encoding="utf-8", errors="replace")
    ]

    assert offenders == [], f"{needle!r} found; cite docs/contract.md §N instead"


def test_every_citation_names_an_existing_section() -> None:
    sections = contract_sections()
    dangling = [
        f"{p.relative_to(ROOT).as_posix()}: §{section}"
        for p in repo_files()
        for section in CITATION.findall(p.read_text(encoding="utf-8", errors="replace"))
        if section not in sections
    ]

    assert dangling == []


def test_citations_exist() -> None:
    cited = [p for p in repo_files() if CITATION.search(p.read_text(errors="replace"))]

    assert len(cited) >= 10
