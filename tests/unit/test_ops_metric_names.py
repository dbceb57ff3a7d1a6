"""The dashboard and the alert rules query only metrics the service exports: the names
pinned for the project, and the names the running code actually exposes on /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
import yaml

from core.settings import Settings
from ingest.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "webhook-ingester.json"
RULES = ROOT / "ops" / "prometheus" / "alerts.yaml"

# The exported names the dashboards and alerts are built on, with their Prometheus type.
PINNED = {
    "ingest_requests_total": "counter",
    "ingest_signature_failures_total": "counter",
    "ingest_produce_latency_seconds": "histogram",
    "ingest_records_produced_total": "counter",
    "ingest_request_duration_seconds": "histogram",
    "ingest_producer_ready": "gauge",
    "consumer_batch_size": "histogram",
    "consumer_apply_latency_seconds": "histogram",
    "consumer_events_total": "counter",
    "consumer_lag": "gauge",
    "consumer_paused": "gauge",
    "consumer_pauses_total": "counter",
    "consumer_pending_events": "gauge",
    "consumer_pending_oldest_age_seconds": "gauge",
    "consumer_dlq_replayed_total": "counter",
    "rc_sync_calls_total": "counter",
    "rc_sync_rate_limit_waits_total": "counter",
    "rc_sync_rate_limit_wait_seconds_total": "counter",
    "rc_sync_customers_behind": "gauge",
    "rc_sync_lag": "gauge",
    "rc_sync_sweep_rows_total": "counter",
    "rc_sync_sweep_completed_timestamp_seconds": "gauge",
    "consumer_poison_flood": "gauge",
    "ingest_produce_buffer_bytes": "gauge",
    "ingest_produce_buffer_limit_bytes": "gauge",
    "ingest_produce_buffer_waiting_requests": "gauge",
    "ingest_head_refusals_total": "counter",
}
SERIES_SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}

KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$:])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _LABEL_LIST.sub("", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    return {name for name in _IDENTIFIER.findall(expr) if name.lower() not in KEYWORDS}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param("up", {"up"}, id="bare selector"),
        pytest.param(
            'sum by (topic, le) (rate(x_bucket{a="b", c=~"d|e"}[$__rate_interval]))',
            {"x_bucket"},
            id="aggregation, matchers and a Grafana range",
        ),
        pytest.param(
            "a / on (pod) group_left (node) b > bool 3e2",
            {"a", "b"},
            id="vector matching and a number",
        ),
        pytest.param('x{topic="ingest.kit.v1"} offset 5m', {"x"}, id="string and offset"),
        pytest.param("histogram_quantile(0.99, y)", {"y"}, id="function call"),
        pytest.param("max(z) > 6 * 3600", {"z"}, id="arithmetic"),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def dashboard_exprs() -> Iterator[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        yield from (target["expr"] for target in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        yield from re.findall(r"label_values\(\s*([^,)]+)", text)


def rule_exprs() -> Iterator[str]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        yield from (rule["expr"] for rule in group["rules"])


def series_names(families: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in SERIES_SUFFIXES[kind]}


def referenced(exprs: Iterator[str]) -> set[str]:
    return set().union(*(metric_names(expr) for expr in exprs))


SOURCES = [
    pytest.param(dashboard_exprs, id="dashboard"),
    pytest.param(rule_exprs, id="alert rules"),
]


@pytest.mark.parametrize("exprs", SOURCES)
def test_queries_use_only_pinned_metric_names(exprs: Any) -> None:
    names = referenced(exprs())

    assert names
    assert names <= series_names(PINNED)


def test_dashboard_shows_every_pinned_metric() -> None:
    names = referenced(dashboard_exprs())

    missing = {f for f, kind in PINNED.items() if not names & series_names({f: kind})}
    assert missing == set()


def exposed_families(text: str) -> dict[str, str]:
    """name -> type from the ``# TYPE`` lines (present even before a labelled metric has a
    sample); counters are declared with their ``_total`` name."""
    families = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        families[name if kind != "counter" or name.endswith("_total") else name + "_total"] = kind
    return families


async def ingest_exposition() -> str:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def consumer_exposition() -> str:
    """The consumers' and rc-sync's metrics (both subscribe to the topics)."""
    import consumers.metrics  # noqa: F401 - registers the consumer metrics
    import rcsync.metrics  # noqa: F401 - registers rc-sync's metrics

    return prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()


async def test_live_expositions_export_every_pinned_metric() -> None:
    exposed = exposed_families(await ingest_exposition()) | exposed_families(consumer_exposition())

    for name, kind in PINNED.items():
        assert exposed.get(name) == kind, name


@pytest.mark.parametrize("exprs", SOURCES)
async def test_queries_use_only_live_metric_names(exprs: Any) -> None:
    exposed = exposed_families(await ingest_exposition()) | exposed_families(consumer_exposition())
    ours = {n: k for n, k in exposed.items() if n.startswith(("ingest_", "consumer_", "rc_sync_"))}

    assert referenced(exprs()) <= series_names(ours)
