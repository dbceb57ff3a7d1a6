"""The consumer's Prometheus metrics; the names are what the dashboards and alerts use."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram(
    "consumer_batch_size",
    "Events per applied batch, by source.",
    ["source"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
APPLY_LATENCY = Histogram(
    "consumer_apply_latency_seconds",
    "Time a source's handler took to apply one batch inside its transaction.",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS = Counter(
    "consumer_events",
    "Events by outcome: applied, duplicate, skipped, pending or dead.",
    ["source", "outcome"],
)
LAG = Gauge(
    "consumer_lag",
    "Records between the committed offset and the end of the partition.",
    ["topic", "partition"],
)
PAUSED = Gauge("consumer_paused", "1 while fetching is paused by a database or broker outage.")
POISON_FLOOD = Gauge(
    "consumer_poison_flood",
    "1 while a source's recent records are mostly poison (the consumer alerts, or holds when"
    " every source it handles floods).",
    ["source"],
)
PAUSES = Counter("consumer_pauses", "Times fetching was paused by an outage.")
PENDING_EVENTS = Gauge("consumer_pending_events", "Parked events by reason.", ["reason"])
PENDING_OLDEST_AGE = Gauge(
    "consumer_pending_oldest_age_seconds", "Age of the oldest parked event (0 when none)."
)
PENDING_EXPIRED = Counter(
    "consumer_pending_expired",
    "Parked events that waited PENDING_MAX_AGE_DAYS and were recorded as skipped.",
    ["reason"],
)
DLQ_REPLAYED = Counter(
    "consumer_dlq_replayed", "Dead letters re-published to their source topic.", ["source"]
)
