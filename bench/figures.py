"""The headline figures: the one-line JSON object that ``make bench`` ends with.

Every benchmark part returns its result dict; a part that measures a headline figure puts it
under ``result["figures"][KEY]``. A key no part measured in this run is printed as ``null``,
never carried over from an earlier run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# Each key is a ratio or figure measured within one run; the targets are in docs/benchmarks.md.
KEYS = (
    "rc_vs_healthz",
    "events_vs_producer",
    "events_p99_over_p50_at_128",
    "events_kib_per_inflight",
    "consume_vs_naive_app",
    "consume_vs_naive_kit",
    "consume_vs_copy",
    "e2e_p99_ms",
    "live_rate_parked_vs_empty",
)


def headline(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline keys first (null when not measured), then any further figure a part gave."""
    measured: dict[str, Any] = {}
    for part in results.values():
        if isinstance(part, Mapping) and isinstance(part.get("figures"), Mapping):
            measured.update(part["figures"])
    line = {key: measured.pop(key, None) for key in KEYS}
    line.update(sorted(measured.items()))
    return line


def json_line(results: Mapping[str, Any]) -> str:
    return orjson.dumps(headline(results)).decode()
