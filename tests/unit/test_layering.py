"""The house's dependency rule, read from the code's own imports.

``contract/`` is the ground floor: the wire format (topics, headers, records, items) that
ingest writes and consumers read; it imports no other package of the project. ``core/`` is
plumbing (settings, Kafka clients, logs, migrations) and may import only the contract.
``ingest/`` (HTTP) and ``consumers/`` (apply) stand on both and never import each other.
``rcsync/`` is an internal subscriber: it stands on the contract, the plumbing and the
consumers' building blocks, never on ingest, and nothing but the command imports it.
``ingester/`` is the command on top and may import any of them. No module of these packages
imports itself back through a chain of others.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("core", "contract", "ingest", "consumers", "rcsync", "ingester")
ALLOWED = {
    "contract": set[str](),
    "core": {"contract"},
    "ingest": {"contract", "core"},
    "consumers": {"contract", "core"},
    "rcsync": {"contract", "core", "consumers"},
}


def imported_modules(path: Path) -> set[str]:
    """Every absolute import of one module, wherever it stands, as the dotted names it may
    mean (``from a import b`` imports ``a`` and maybe the module ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every absolute import in one module."""
    return {name.split(".")[0] for name in imported_modules(path)}


def violations(package: str) -> list[str]:
    below = ALLOWED[package] | {package}
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted((imported_packages(path) & set(PRODUCT)) - below)
    ]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_lies_below_it(package: str) -> None:
    assert violations(package) == []


def module_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports."""
    paths = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for package in packages
        for path in (root / package).rglob("*.py")
    }
    return {name: imported_modules(path) & set(paths) - {name} for name, path in paths.items()}


def find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    """One import cycle (its modules, the first repeated at the end), or [] when none."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once fully explored

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target, path)):
                return cycle
        path.pop()
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return []


def test_no_module_imports_itself_through_others() -> None:
    assert find_cycle(module_graph(ROOT, PRODUCT)) == []


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        pytest.param({"a": {"b"}, "b": {"c"}, "c": set()}, [], id="a chain"),
        pytest.param({"a": {"b", "c"}, "b": {"c"}, "c": set()}, [], id="a diamond"),
        pytest.param({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"], id="a ring"),
        pytest.param({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"], id="further on"),
    ],
)
def test_the_cycle_finder(graph: dict[str, set[str]], cycle: list[str]) -> None:
    assert find_cycle(graph) == cycle


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from ingest.records import Record\n    import consumers.db\n")
    assert imported_packages(module) >= {"ingest", "consumers"}


def test_every_product_package_is_under_the_rule_or_on_top() -> None:
    assert set(ALLOWED) | {"ingester"} == set(PRODUCT)
    assert all((ROOT / name / "__init__.py").is_file() for name in PRODUCT)
