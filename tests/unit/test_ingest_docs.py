"""The published topic contract (docs/asyncapi.yaml, docs/topics.md) matches the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from contract.topics import STREAMS, topic_name
from ingest.registry import ENDPOINTS
from ingester import samples

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_asyncapi_has_one_channel_per_stream() -> None:
    spec = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert addresses == {topic_name("", stream) for stream in STREAMS}


def test_topics_page_names_topics_endpoints_and_the_sample_person() -> None:
    page = (DOCS / "topics.md").read_text()
    for stream in STREAMS:
        assert topic_name("", stream) in page
    for endpoint in ENDPOINTS:
        assert endpoint.path in page
    for constant in (
        samples.SAMPLE_EMAIL,
        samples.SAMPLE_USER_ID,
        samples.SAMPLE_EXPERIMENT,
        samples.SAMPLE_REVENUECAT_ID,
        samples.SAMPLE_KLAVIYO_PROFILE_ID,
        samples.SAMPLE_KLAVIYO_EXTERNAL_ID,
        *samples.SAMPLE_VARIANTS,
    ):
        assert constant in page
