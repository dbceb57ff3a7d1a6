"""Prometheus metrics of the ingest service (names are relied on by dashboards and alerts).

Each app owns a :class:`CollectorRegistry`, so creating the app twice in one process (tests)
never registers a metric twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "IngestMetrics"]

# Produce acks on a healthy cluster take milliseconds; the tail goes up to PRODUCE_TIMEOUT_S.
_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class IngestMetrics:
    registry: CollectorRegistry
    requests: Counter
    signature_failures: Counter
    produce_latency: Histogram
    records_produced: Counter
    request_duration: Histogram
    producer_ready: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> IngestMetrics:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        return cls(
            registry=registry,
            requests=Counter(
                "ingest_requests",
                "Webhook and event requests answered, by endpoint and HTTP status.",
                ("endpoint", "status"),
                registry=registry,
            ),
            signature_failures=Counter(
                "ingest_signature_failures",
                "Requests rejected with 401, by provider and reason.",
                ("provider", "reason"),
                registry=registry,
            ),
            produce_latency=Histogram(
                "ingest_produce_latency_seconds",
                "Time from handing a request's records to Kafka until all were acknowledged.",
                ("endpoint",),
                buckets=_PRODUCE_BUCKETS,
                registry=registry,
            ),
            records_produced=Counter(
                "ingest_records_produced",
                "Records acknowledged by Kafka, by topic.",
                ("topic",),
                registry=registry,
            ),
            request_duration=Histogram(
                "ingest_request_duration_seconds",
                "Time to answer a webhook or event request, by endpoint.",
                ("endpoint",),
                buckets=_PRODUCE_BUCKETS,
                registry=registry,
            ),
            producer_ready=Gauge(
                "ingest_producer_ready",
                "1 while the Kafka producer is connected, else 0.",
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
