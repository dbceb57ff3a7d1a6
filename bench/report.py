"""The final table and the JSON file."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psutil


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        # Other work on the machine skews every figure; this says how busy it was.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [_line(headers, widths), "  ".join("-" * w for w in widths)]
    lines += [_line(row, widths) for row in cells]
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """First column left-aligned (names), the others right-aligned (numbers)."""
    return "  ".join(
        cell.rjust(width) if i else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


Column = tuple[str, Callable[[dict[str, Any]], Any]]

THROUGHPUT: list[Column] = [
    ("scenario", lambda s: s["scenario"]),
    ("req/s", lambda s: s["requests_per_s"]),
    ("records/s", lambda s: s["records_per_s"]),
    ("p50 ms", lambda s: s["latency_ms"]["p50"]),
    ("p99 ms", lambda s: s["latency_ms"]["p99"]),
    ("x healthz", lambda s: s["ratio_to_healthz"]),
    ("not ok", lambda s: s["completed"] - s["ok"]),
    ("server cpu", lambda s: s["server_cpu_cores"]),
    ("loadgen cpu", lambda s: s["loadgen_cpu_cores"]),
    ("broker cpu", lambda s: s.get("broker_cpu_cores")),
]
MEMORY: list[Column] = [
    ("scenario", lambda s: s["scenario"]),
    ("idle RSS MiB", lambda s: s["server_rss_before_mib"]),
    ("peak RSS MiB", lambda s: s["server_rss_peak_mib"]),
    ("peak/idle", lambda s: s["server_rss_peak_over_before"]),
    ("KiB/in-flight req", lambda s: s["server_rss_kib_per_inflight_request"]),
    ("in flight", lambda s: s["concurrency"]),
    ("broker peak RSS MiB", lambda s: s.get("broker_rss_peak_mib")),
]
CONSUME: list[Column] = [
    ("source", lambda s: s["source"]),
    ("events", lambda s: s["events"]),
    ("applied", lambda s: s["applied"]),
    ("batched ev/s", lambda s: s["events_per_s"]),
    ("naive ev/s", lambda s: s["naive_events_per_s"]),
    ("batched/naive", lambda s: s["batched_over_naive"]),
    ("mean batch", lambda s: s.get("mean_batch_size")),
    ("startup s", lambda s: s["startup_s"]),
    ("consumer cpu", lambda s: s.get("consumer_cpu_cores")),
    ("postgres cpu", lambda s: s.get("postgres_cpu_cores")),
    ("publish rec/s", lambda s: s["publish_records_per_s"]),
]


def columns_table(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    return table([h for h, _ in columns], [[get(row) for _, get in columns] for row in rows])


def ingest_tables(ingest: dict[str, Any]) -> str:
    scenarios = ingest["scenarios"]
    text = f"{columns_table(THROUGHPUT, scenarios)}\n\n{columns_table(MEMORY, scenarios)}"
    slope = ingest.get("memory_slope")
    if slope:
        low, high = slope["concurrency"]
        text += (
            f"\n{slope['scenario']} at {low} -> {high} connections: peak RSS "
            f"{slope['peak_rss_mib'][0]} -> {slope['peak_rss_mib'][1]} MiB, "
            f"{slope['kib_per_extra_inflight_request']} KiB per extra in-flight request; "
            f"{slope['requests_per_s'][0]} -> {slope['requests_per_s'][1]} req/s, "
            f"p50 {slope['latency_ms'][0]['p50']} -> {slope['latency_ms'][1]['p50']} ms, "
            f"p99 {slope['latency_ms'][0]['p99']} -> {slope['latency_ms'][1]['p99']} ms"
        )
    producer = ingest.get("producer_baseline")
    if producer:
        events = next((s for s in scenarios if s["scenario"] == "POST /events"), None)
        share = (
            f" (/events keeps {events['records_per_s'] / producer['records_per_s']:.2f} of it)"
            if events and producer["records_per_s"]
            else ""
        )
        text += (
            f"\nbare producer, /events records at {producer['concurrency']} in flight: "
            f"{producer['records_per_s']:,.0f} records/s{share}, "
            f"p50 {producer['latency_ms']['p50']} ms, p99 {producer['latency_ms']['p99']} ms, "
            f"producer cpu {_cell(producer.get('producer_cpu_cores'))}"
        )
        if events and events.get("records_per_cpu_s") and producer.get("records_per_cpu_s"):
            text += (
                f"\nrecords per CPU-second: /events server {events['records_per_cpu_s']:,}, "
                f"bare producer {producer['records_per_cpu_s']:,}"
            )
    return text


def consume_table(consume: dict[str, Any]) -> str:
    text = columns_table(CONSUME, consume["sources"])
    if consume.get("copy_rows_per_s"):
        text += f"\nCOPY of the same impression rows: {consume['copy_rows_per_s']:,.0f} rows/s"
    return text


def parked_text(result: dict[str, Any]) -> str:
    live = table(
        ["source", "empty ev/s", f"{result['parked']:,} parked ev/s", "parked/empty"],
        [
            [r["source"], r["empty_events_per_s"], r["parked_events_per_s"], r["parked_over_empty"]]
            for r in result["live"]
        ],
    )
    passes = table(
        ["ready rows", "parked rows", "applied", "pass s", "ms per ready row"],
        [
            [p["ready"], p["parked"], p["applied"], p["pass_s"], p["ms_per_ready_row"]]
            for p in result["passes"]
        ],
    )
    return f"{live}\n\n{passes}\npending list: {result['pending_list_s'] * 1000:.0f} ms"


def e2e_text(e2e: dict[str, Any]) -> str:
    lat, scaling = e2e["latency"], e2e["scaling"]
    applied, answered = lat["latency_ms"], lat["http_answer_ms"]
    lines = [
        f"offered {lat['rate_events_per_s']:,.0f} events/s for {lat['duration_s']:g} s: "
        f"{lat['requests']} requests, {lat['events']} events, not ok {lat['not_ok']}, "
        f"not applied {lat['not_applied']}",
        f"request -> applied  ms: p50 {applied['p50']}  p90 {applied['p90']}  "
        f"p99 {applied['p99']}  max {applied['max']}",
        f"request -> answered ms: p50 {answered['p50']}  p90 {answered['p90']}  "
        f"p99 {answered['p99']}  max {answered['max']}",
    ]
    for run in scaling["runs"]:
        lines.append(
            f"mixed backlog, {run['processes']} consumer process(es): "
            f"{run['events_per_s']:,.0f} events/s ({run['events']} events); cores used: "
            f"consumers {run.get('consumer_cpu_cores')}, postgres "
            f"{run.get('postgres_cpu_cores')}, whole machine {run.get('machine_busy_cores')}"
        )
    lines.append(f"two processes / one: {scaling['two_over_one']}")
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    parts = [
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, load average {m['load_average_1m_at_start']} at start"
    ]
    if "ingest" in results:
        parts += [
            "",
            "== ingest HTTP (one server process, closed-loop load) ==",
            ingest_tables(results["ingest"]),
        ]
    if "consume" in results:
        parts += [
            "",
            "== consumer apply (batched runtime vs one statement per row) ==",
            consume_table(results["consume"]),
        ]
    if "parked" in results:
        parts += [
            "",
            "== parked events (live rate, retry pass, pending list) ==",
            parked_text(results["parked"]),
        ]
    if "e2e" in results:
        parts += [
            "",
            "== end to end (open-loop HTTP -> two consumers -> committed) and scaling ==",
            e2e_text(results["e2e"]),
        ]
    return "\n".join(parts)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
