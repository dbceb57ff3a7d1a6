"""The house's dependency rule, read from the code's own imports.

``ingest/`` (HTTP) and ``consumers/`` (apply) share only the contract on the topics, which lives
in ``contract/`` and imports neither; ``core/`` is plumbing under everything and imports none of
the product packages. ``ingester/`` is the command on top and may import any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "contract", "ingest", "consumers", "ingester")
FORBIDDEN = {
    "core": {"contract", "ingest", "consumers", "ingester"},
    "contract": {"ingest", "consumers", "ingester"},
    "ingest": {"consumers", "ingester"},
    "consumers": {"ingest", "ingester"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every absolute import in one module, wherever it stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def violations(package: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_packages(path) & FORBIDDEN[package])
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_lies_below_it(package: str) -> None:
    assert violations(package) == []


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from ingest.records import Record\n    import consumers.db\n")
    assert imported_packages(module) >= {"ingest", "consumers"}


def test_every_product_package_is_under_the_rule_or_on_top() -> None:
    assert set(FORBIDDEN) | {"ingester"} == set(PRODUCT)
    assert all((ROOT / name / "__init__.py").is_file() for name in PRODUCT)
