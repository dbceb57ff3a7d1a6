"""rc-sync's Prometheus metrics (docs/rc-sync.md); the names are what the alerts use."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from rcsync.answers import OUTCOMES
from rcsync.ratelimit import CLIENT, RETRY_AFTER

CALLS = Counter(
    "rc_sync_calls",
    "Calls to RevenueCat by outcome: ok, refused (a permanent 4xx, skipped), rate_limited"
    " (429), transient (5xx, 408, 409), unauthorized (401, 403), timeout, transport_error.",
    ["outcome"],
)
RATE_LIMIT_WAITS = Counter(
    "rc_sync_rate_limit_waits",
    "Calls that waited for their turn: client (RC_SYNC_MAX_RPS) or retry_after (a 429).",
    ["reason"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "rc_sync_rate_limit_wait_seconds",
    "Seconds calls waited for their turn, by reason.",
    ["reason"],
)
CUSTOMERS_BEHIND = Gauge(
    "rc_sync_customers_behind",
    "Customers found different from our tables whose call has not been answered yet.",
)
LAG = Gauge(
    "rc_sync_lag",
    "Records of the RevenueCat topic the rc-sync group has not committed yet.",
    ["topic", "partition"],
)
SWEEP_ROWS = Counter("rc_sync_sweep_rows", "Customers the sweep compared with our tables.")
SWEEP_COMPLETED = Gauge(
    "rc_sync_sweep_completed_timestamp_seconds",
    "When the last sweep over every customer ended (unix seconds; 0 before the first).",
)

for _outcome in OUTCOMES:
    CALLS.labels(_outcome)
for _reason in (CLIENT, RETRY_AFTER):
    RATE_LIMIT_WAITS.labels(_reason)
    RATE_LIMIT_WAIT_SECONDS.labels(_reason)


def waited(reason: str, seconds: float) -> None:
    RATE_LIMIT_WAITS.labels(reason).inc()
    RATE_LIMIT_WAIT_SECONDS.labels(reason).inc(seconds)
