"""Every place a provider is named agrees with the others (README, "Adding a provider").

A provider is named in the contract (its ``ce_source`` and stream), in the topic list, by
an ingest endpoint, by a consumer handler, by a ``send-sample`` sample, by the dev secrets,
in the Kubernetes topics and in docs/contract.md. These tests fail when one of them is
added without the others. The built Kubernetes manifests (KEDA triggers, the production
partitions patch) are checked in tests/integration/test_k8s_manifests.py, docs/topics.md
in tests/unit/test_ingest_docs.py, docs/asyncapi.yaml in tests/unit/test_asyncapi.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import compile_path

from consumers.registry import FACTORIES
from contract.headers import CE_SOURCE
from contract.records import Record
from contract.topics import DLQ, STREAM_OF_SOURCE, STREAMS, topic_name
from core.settings import Settings, from_mapping
from ingest.clock import received_at
from ingest.endpoint import Endpoint, Incoming
from ingest.registry import ENDPOINTS
from ingester import samples
from ingester.dev import DEV_SECRETS

ROOT = Path(__file__).resolve().parents[2]
DEV_SETTINGS = from_mapping(DEV_SECRETS)

# An endpoint without a sample of its own, with the request that stands in for one. The
# legacy Kit hook is a second door of the kit source, whose sample is `send-sample kit`.
UNSAMPLED = {
    "kit_legacy": samples.Sample(
        f"/webhooks/kit/legacy/{DEV_SETTINGS.kit_legacy_token}/subscriber.subscriber_activate",
        b'{"subscriber": {"id": 1, "email_address": "a@example.com", "state": "active"}}',
        {},
    )
}


def endpoint_for(path: str) -> tuple[Endpoint[Any], dict[str, str]]:
    """The registered endpoint whose route matches ``path``, with its path parameters."""
    for endpoint in ENDPOINTS:
        matched = compile_path(endpoint.path)[0].match(path)
        if matched:
            return endpoint, matched.groupdict()
    raise AssertionError(f"no endpoint in ingest/registry.py serves {path}")


def accepted(sample: samples.Sample) -> tuple[Endpoint[Any], list[Record]]:
    """What the endpoint ``sample`` is posted to would publish (under the dev secrets)."""
    endpoint, params = endpoint_for(sample.path)
    config = endpoint.configured(DEV_SETTINGS)
    assert config is not None, f"the dev secrets do not configure {endpoint.name}"
    now = time.time()
    headers = {name.lower(): value for name, value in sample.headers.items()}
    incoming = Incoming(headers, params, sample.body, now, received_at(now))
    return endpoint, endpoint.accept(config, incoming)


def requests() -> dict[str, samples.Sample]:
    """One request per sample (signed with the dev secrets) and per unsampled endpoint."""
    built = {name: build(DEV_SETTINGS) for name, build in samples.BUILDERS.items()}
    return {**built, **UNSAMPLED}


def test_every_source_has_one_stream_and_every_stream_one_source() -> None:
    assert sorted(STREAM_OF_SOURCE.values()) == sorted(STREAMS)


def test_every_source_has_a_consumer_handler() -> None:
    assert set(FACTORIES) == set(STREAM_OF_SOURCE)
    for source, factory in FACTORIES.items():
        assert factory().source == source


def test_every_topic_is_a_kafka_topic_in_k8s() -> None:
    documents = yaml.safe_load_all((ROOT / "k8s" / "base" / "kafkatopics.yaml").read_text())
    declared = [d["spec"]["topicName"] for d in documents if d and d["kind"] == "KafkaTopic"]
    assert sorted(declared) == sorted(topic_name("", s) for s in (*STREAMS, DLQ))


def test_endpoint_names_and_paths_are_distinct() -> None:
    assert len({e.name for e in ENDPOINTS}) == len(ENDPOINTS)
    assert len({e.path for e in ENDPOINTS}) == len(ENDPOINTS)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_an_endpoint_is_off_until_configured_and_on_in_make_dev(endpoint: Endpoint[Any]) -> None:
    assert endpoint.configured(Settings()) is None
    assert endpoint.configured(DEV_SETTINGS) is not None


def test_the_sample_names_are_the_sample_builders() -> None:
    assert tuple(samples.BUILDERS) == samples.PROVIDERS


def test_every_endpoint_publishes_its_request_to_a_known_stream() -> None:
    reached: set[str] = set()
    sources: set[str] = set()
    for name, sample in requests().items():
        endpoint, records = accepted(sample)
        assert records, name
        for record in records:
            source = record.header(CE_SOURCE)
            assert source in STREAM_OF_SOURCE, (name, source)
            assert record.stream == STREAM_OF_SOURCE[source], (name, record.stream)
            sources.add(source)
        reached.add(endpoint.name)
    missing = {e.name for e in ENDPOINTS} - reached
    assert not missing, f"no sample in ingester/samples.py posts to {missing}"
    assert sources == set(STREAM_OF_SOURCE), "every source needs a sample"


def contract_section(number: str) -> str:
    text = (ROOT / "docs" / "contract.md").read_text()
    start = re.search(rf"^#{{2,3}} {re.escape(number)}\.? ", text, re.MULTILINE)
    assert start is not None, number
    end = re.search(r"^## ", text[start.end() :], re.MULTILINE)
    return text[start.start() : start.end() + end.start() if end else len(text)]


def test_the_contract_names_every_endpoint_topic_and_source() -> None:
    headings = re.findall(r"^### 4\.\d+ `POST (\S+)`", contract_section("4"), re.MULTILINE)
    assert sorted(headings) == sorted(e.path for e in ENDPOINTS)
    topics = contract_section("5")
    for stream in (*STREAMS, DLQ):
        assert f"`{{prefix}}{topic_name('', stream)}`" in topics
    for source in STREAM_OF_SOURCE:
        assert f"`{source}`" in topics
