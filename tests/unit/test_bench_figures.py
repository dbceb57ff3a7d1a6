"""The benchmark's last line: every headline key, null when not measured in this run."""

from __future__ import annotations

import orjson

from bench import figures


def test_every_headline_key_is_printed_and_unmeasured_ones_are_null() -> None:
    results = {
        "machine": {"cpus": 2},
        "ingest": {"figures": {"rc_vs_healthz": 0.4, "events_rss_mib": 90}},
        "consume": {"sources": [], "figures": {"consume_vs_naive_kit": 16.2}},
    }
    line = orjson.loads(figures.json_line(results))
    assert list(line)[: len(figures.KEYS)] == list(figures.KEYS)
    assert line["rc_vs_healthz"] == 0.4
    assert line["consume_vs_naive_kit"] == 16.2
    assert line["e2e_p99_ms"] is None
    assert line["events_rss_mib"] == 90


def test_the_line_is_one_line() -> None:
    assert "\n" not in figures.json_line({"ingest": {"figures": {"rc_vs_healthz": 1.0}}})
