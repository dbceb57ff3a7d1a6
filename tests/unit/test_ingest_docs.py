"""The topics page (docs/topics.md) matches the code; docs/asyncapi.yaml is generated
(tests/unit/test_asyncapi.py)."""

from __future__ import annotations

from pathlib import Path

from contract.topics import STREAMS, topic_name
from ingest.registry import ENDPOINTS
from ingester import samples

DOCS = Path(__file__).resolve().parents[2] / "docs"


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
