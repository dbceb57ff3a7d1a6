"""The consumer's health/metrics server over real HTTP."""

from __future__ import annotations

import httpx

from consumers import metrics
from consumers.health import HealthServer

METRIC_NAMES = (
    "consumer_batch_size",
    "consumer_apply_latency_seconds",
    "consumer_events_total",
    "consumer_lag",
    "consumer_paused",
    "consumer_pauses_total",
    "consumer_pending_events",
    "consumer_pending_oldest_age_seconds",
    "consumer_dlq_replayed_total",
    "consumer_poison_flood",
)


async def test_health_ready_and_metrics() -> None:
    state = {"consumer": False, "database": True}

    async def readiness() -> dict[str, bool]:
        return dict(state)

    # Touch the labelled metrics so they have a sample to show.
    metrics.BATCH_SIZE.labels("kit").observe(1)
    metrics.APPLY_LATENCY.labels("kit").observe(0.01)
    metrics.EVENTS.labels("kit", "applied").inc(0)
    metrics.LAG.labels("t", "0").set(0)
    metrics.PENDING_EVENTS.labels("unknown email").set(0)
    metrics.DLQ_REPLAYED.labels("kit").inc(0)
    metrics.POISON_FLOOD.labels("kit").set(0)

    live = {"live": True}

    def liveness() -> dict[str, bool]:
        return dict(live)

    server = HealthServer(readiness, port=0, host="127.0.0.1", liveness=liveness)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).status_code == 200
            live["live"] = False
            stalled = await client.get("/healthz")
            assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
            live["live"] = True
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["checks"] == {"consumer": False, "database": True}
            state["consumer"] = True
            assert (await client.get("/readyz")).status_code == 200
            body = (await client.get("/metrics")).text
    finally:
        await server.stop()
    for name in METRIC_NAMES:
        assert f"\n{name}" in body or body.startswith(name), name
