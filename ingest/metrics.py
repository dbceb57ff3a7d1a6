"""Prometheus metrics of the ingest service (names are relied on by dashboards and alerts).

Each app owns a :class:`CollectorRegistry`, so creating the app twice in one process (tests)
never registers a metric twice.
"""

from __future__ import annotations

from collections.abc import Callable
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

from ingest.budget import ByteBudget

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
    produce_buffer_bytes: Gauge
    produce_buffer_limit_bytes: Gauge
    produce_buffer_waiting: Gauge
    head_refusals: Counter

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
            produce_buffer_bytes=Gauge(
                "ingest_produce_buffer_bytes",
                "Bytes of records handed to Kafka and not yet acknowledged.",
                registry=registry,
            ),
            produce_buffer_limit_bytes=Gauge(
                "ingest_produce_buffer_limit_bytes",
                "PRODUCE_BUFFER_BYTES: beyond it requests wait their turn, then 503.",
                registry=registry,
            ),
            produce_buffer_waiting=Gauge(
                "ingest_produce_buffer_waiting_requests",
                "Requests waiting for room under PRODUCE_BUFFER_BYTES.",
                registry=registry,
            ),
            head_refusals=Counter(
                "ingest_head_refusals",
                "Requests refused in the HTTP protocol before the app: 431 (head over "
                "MAX_HEADER_BYTES or MAX_HEADERS) and 408 (head not within HEADER_TIMEOUT_S).",
                ("status", "reason"),
                registry=registry,
            ),
        )

    def watch_budget(self, budget: Callable[[], ByteBudget | None]) -> None:
        """Read the producer's byte budget (``budget()``, None while there is no producer)
        when scraped, not on every request."""

        def read(value: Callable[[ByteBudget], float]) -> Callable[[], float]:
            return lambda: 0.0 if (found := budget()) is None else value(found)

        self.produce_buffer_bytes.set_function(read(lambda b: b.used))
        self.produce_buffer_limit_bytes.set_function(read(lambda b: b.limit))
        self.produce_buffer_waiting.set_function(read(lambda b: b.waiting))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
