"""The alert rules have Prometheus's rule-file shape, cover the incidents the service can
have, link to runbooks that exist, and are the ones the PrometheusRule deploys."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts_test.yaml"
PROMETHEUS_RULE = ROOT / "ops" / "prometheus" / "prometheusrule.yaml"
RUNBOOKS = ROOT / "docs" / "operating.md"

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
ALERT_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "limit", "rules"}
COMPARISON = re.compile(r"(?<![=!<>])(==|!=|>=|<=|>|<)(?![=~])")


def load_rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def alerts() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def test_rule_file_shape() -> None:
    data = load_rules()

    assert set(data) == {"groups"}
    names = [group["name"] for group in data["groups"]]
    assert len(names) == len(set(names))
    for group in data["groups"]:
        assert set(group) <= GROUP_KEYS, group["name"]
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()


def brackets_balance(expr: str) -> bool:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in expr:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def test_every_alert_is_complete() -> None:
    names = [rule["alert"] for rule in alerts()]

    assert len(names) == len(set(names))
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert set(rule) <= ALERT_KEYS, name
        assert "for" not in rule or DURATION.match(rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        assert brackets_balance(rule["expr"]), name
        without_matchers = re.sub(r"\{[^}]*\}", "", rule["expr"])
        assert COMPARISON.search(without_matchers), f"{name}: an alert needs a threshold"


@pytest.mark.parametrize(
    ("incident", "needle"),
    [
        pytest.param("consumer lag growing", "deriv(consumer_lag", id="lag"),
        pytest.param("dead-letter rate", 'consumer_events_total{outcome="dead"}', id="dlq"),
        pytest.param("pending backlog age", "consumer_pending_oldest_age_seconds", id="pending"),
        pytest.param("signature failures", "ingest_signature_failures_total", id="signatures"),
        pytest.param("503 rate", 'ingest_requests_total{status="503"}', id="503"),
        pytest.param("database outage", "consumer_paused", id="paused"),
        pytest.param("RevenueCat down", "rc_sync_customers_behind", id="rc-sync waiting"),
        pytest.param("RevenueCat key", 'rc_sync_calls_total{outcome="unauthorized"}', id="key"),
        pytest.param("poison flood hold", "consumer_poison_flood", id="flood"),
    ],
)
def test_incident_has_an_alert(incident: str, needle: str) -> None:
    assert any(needle in rule["expr"] for rule in alerts()), incident


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_runbook_links_point_at_existing_sections() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())

    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path.endswith("/docs/operating.md"), url
        assert anchor in anchors, f"{rule['alert']}: no section #{anchor} in docs/operating.md"


def test_prometheus_rule_spec_equals_the_rule_file() -> None:
    manifest = yaml.safe_load(PROMETHEUS_RULE.read_text())

    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == load_rules(), (
        "edit ops/prometheus/alerts.yaml and the manifest together"
    )


def test_every_alert_has_a_rule_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }

    assert tested == {rule["alert"] for rule in alerts()}


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian/Ubuntu package: prometheus)"
)
@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["check", "rules", str(RULES)], id="check rules"),
        pytest.param(["test", "rules", str(RULE_TESTS)], id="rule unit tests"),
    ],
)
def test_promtool_accepts_the_rules(arguments: list[str]) -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *arguments], capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
