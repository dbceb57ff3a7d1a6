"""The benchmark's printed report, and the import graph of ``bench/`` (no cycle)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from bench import report

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_imports(path: Path) -> set[str]:
    """The ``bench`` modules one module imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "bench":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bench."):
            found.add(str(node.module).split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("bench."))
    return found


def test_no_bench_module_imports_itself_back() -> None:
    graph = {path.stem: bench_imports(path) for path in BENCH.glob("*.py")}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle in bench/: {exc.args[1]}") from None
    assert "report" in order


def test_the_parked_section_is_printed() -> None:
    parked = {
        "parked": 500_000,
        "live": [
            {
                "source": "kit",
                "empty_events_per_s": 4000.0,
                "parked_events_per_s": 3900.0,
                "parked_over_empty": 0.97,
            }
        ],
        "passes": [
            {
                "ready": 1000,
                "parked": 500_000,
                "applied": 1000,
                "pass_s": 0.5,
                "ms_per_ready_row": 0.5,
            }
        ],
        "pending_list_s": 0.0123,
    }
    text = report.render({"machine": MACHINE, "parked": parked})
    assert "== parked events (live rate, retry pass, pending list) ==" in text
    assert "500,000 parked ev/s" in text
    assert text.endswith("pending list: 12 ms")


MACHINE = {
    "cpus": 2,
    "cpu_model": "test",
    "memory_gib": 4.0,
    "python": "3.11",
    "load_average_1m_at_start": 0.1,
}
