"""Benchmark 1: the real ingest server under HTTP load, scenario by scenario.

The server runs as ``python -m ingester.cli serve`` (uvicorn, uvloop, httptools, exactly as
deployed) against an embedded Tansu broker; :mod:`bench.loadgen` loads it from another
process. ``GET /healthz`` is the baseline: the same HTTP stack with no body, no
verification and no Kafka. Each webhook scenario's req/s is divided by it. Every scenario
gets a fresh broker and server: its memory figures start from an idle process, and no
scenario runs against a broker holding the previous one's records.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench import loadgen, monitor
from bench.payloads import SCENARIOS, Request, Scenario, secret_env
from bench.procs import Cleanup, child_env, python, wait_until
from bench.stats import ratio, rounded
from core.devstack import TansuBroker, free_port
from core.settings import Settings
from core.topics import create_topics

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadOptions:
    duration: float
    warmup: float
    concurrency: int
    max_requests: int
    pool: int  # distinct pre-signed requests per scenario


@dataclass(frozen=True, slots=True)
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    broker_pid: int | None
    log: Path


def start_broker(cleanup: Cleanup) -> TansuBroker:
    broker = TansuBroker()
    cleanup.add("stop the Tansu broker", broker.stop_sync)
    broker.start_sync()
    return broker


def fresh_topics(broker: TansuBroker) -> str:
    """A unique topic prefix whose topics now exist on ``broker``."""
    prefix = f"bench{secrets.token_hex(4)}."
    settings = Settings(
        kafka_bootstrap_servers=broker.bootstrap,
        kafka_idempotent_producer=False,
        topic_prefix=prefix,
    )
    asyncio.run(create_topics(settings))
    return prefix


def start_server(cleanup: Cleanup, workdir: Path, broker: TansuBroker) -> Server:
    prefix = fresh_topics(broker)
    port = free_port()
    env = child_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "KAFKA_IDEMPOTENT_PRODUCER": "false",
            "TOPIC_PREFIX": prefix,
            "PORT": str(port),
            "ENVIRONMENT": "dev",
            **secret_env(),
        }
    )
    log = workdir / "ingest-server.log"
    # cwd is the empty work dir: the server must not read a `make dev` env file.
    proc = cleanup.spawn([python(), "-m", "ingester.cli", "serve"], env=env, cwd=workdir, log=log)
    url = f"http://127.0.0.1:{port}/readyz"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the ingest server exited ({proc.returncode}); see {log}")
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 60, "the ingest server becoming ready", interval=0.1)
    return Server(proc, port, broker_pid(broker), log)


def broker_pid(broker: TansuBroker) -> int | None:
    """The broker's pid: our child whose command line names its listener."""
    listener = f"tcp://127.0.0.1:{broker.port}"
    for child in psutil.Process().children():
        try:
            if listener in child.cmdline():
                return int(child.pid)
        except psutil.NoSuchProcess:
            continue
    return None


def preflight(server: Server, request: Request, scenario: Scenario) -> None:
    """One request through a general-purpose client: a mis-signed scenario must fail loudly
    here instead of benchmarking 401s."""
    response = httpx.request(
        request.method,
        f"http://127.0.0.1:{server.port}{request.path}",
        headers={"Content-Type": "application/json", **request.headers},
        content=request.body or None,
        timeout=10.0,
    )
    if response.status_code != scenario.expected_status:
        raise RuntimeError(
            f"{scenario.name}: expected {scenario.expected_status}, got "
            f"{response.status_code} {response.text[:200]}"
        )


def run_scenario(
    cleanup: Cleanup, workdir: Path, scenario: Scenario, options: LoadOptions
) -> dict[str, Any]:
    """One scenario on a fresh broker and a fresh server, so that its memory figures and its
    broker's backlog are its own."""
    local = Cleanup()
    cleanup.add(f"tear down {scenario.name}", local.close)
    try:
        broker = start_broker(local)
        server = start_server(local, workdir, broker)
        return measure(local, workdir, server, scenario, options)
    finally:
        local.close()


def measure(
    cleanup: Cleanup, workdir: Path, server: Server, scenario: Scenario, options: LoadOptions
) -> dict[str, Any]:
    count = 1 if scenario.records_per_request == 0 else options.pool
    requests = [scenario.build(i) for i in range(count)]
    watched = {"server": psutil.Process(server.proc.pid)}
    if server.broker_pid is not None:
        watched["broker"] = psutil.Process(server.broker_pid)
    idle = {name: monitor.sample(p) for name, p in watched.items()}
    preflight(server, requests[0], scenario)
    request_file = workdir / "requests.bin"
    loadgen.write_requests(request_file, [r.encode(server.port) for r in requests])
    argv = [
        python(), "-m", "bench.loadgen", "--port", str(server.port),
        "--requests", str(request_file), "--concurrency", str(options.concurrency),
        "--warmup", str(options.warmup), "--duration", str(options.duration),
        "--max-requests", str(options.max_requests),
    ]  # fmt: skip
    load = cleanup.spawn(
        argv, env=child_env({}), cwd=workdir, log=workdir / "loadgen.log", stdout=subprocess.PIPE
    )
    traces = monitor.watch(load, watched, timeout=options.warmup + options.duration + 90)
    output = load.stdout.read() if load.stdout is not None else b""
    if load.wait() != 0 or not output:
        raise RuntimeError(f"the load generator failed; see {workdir / 'loadgen.log'}")
    return summarise(scenario, options, orjson.loads(output), idle, traces)


def summarise(
    scenario: Scenario,
    options: LoadOptions,
    result: dict[str, Any],
    idle: dict[str, monitor.Sample],
    traces: dict[str, monitor.Trace],
) -> dict[str, Any]:
    start, end = result["window"]
    server = traces["server"]
    rss_before = idle["server"].rss
    rss_peak = max(server.peak_rss, rss_before)
    ok = sum(v for k, v in result["statuses"].items() if int(k) == scenario.expected_status)
    measured = result["measured_s"]
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "concurrency": options.concurrency,
        "completed": result["completed"],
        "ok": ok,
        "statuses": result["statuses"],
        "errors": result["errors"],
        "measured_s": measured,
        "requests_per_s": round(ok / measured, 1) if measured else 0.0,
        "records_per_s": round(ok * scenario.records_per_request / measured, 1)
        if measured
        else 0.0,
        "latency_ms": result["latency_ms"],
        "server_cpu_cores": rounded(server.cpu_share(start, end)),
        "loadgen_cpu_cores": rounded(result["loadgen_cpu_s"] / (end - start + options.warmup)),
        "server_rss_before_mib": round(rss_before / MIB, 1),
        "server_rss_peak_mib": round(rss_peak / MIB, 1),
        "server_rss_peak_over_before": rounded(ratio(rss_peak, rss_before), 3),
        "server_rss_kib_per_inflight_request": round(
            (rss_peak - rss_before) / 1024 / options.concurrency, 1
        ),
    }
    cores = summary["server_cpu_cores"]
    summary["records_per_cpu_s"] = round(summary["records_per_s"] / cores) if cores else None
    summary["requests_per_cpu_s"] = round(summary["requests_per_s"] / cores) if cores else None
    if "broker" in traces:
        summary["broker_cpu_cores"] = rounded(traces["broker"].cpu_share(start, end))
        summary["broker_rss_peak_mib"] = round(traces["broker"].peak_rss / MIB, 1)
    return summary


def run(cleanup: Cleanup, options: LoadOptions, log: Any) -> dict[str, Any]:
    """Every scenario; req/s ratios against the /healthz baseline of the same run."""
    workdir = cleanup.temp_dir("bench-ingest-")
    results = []
    for scenario in SCENARIOS:
        log(f"  {scenario.name}: {options.warmup:g} s warm-up + {options.duration:g} s ...")
        started = time.monotonic()
        result = run_scenario(cleanup, workdir, scenario, options)
        results.append(result)
        log(
            f"    {result['requests_per_s']} req/s, p99 {result['latency_ms']['p99']} ms, "
            f"RSS {result['server_rss_before_mib']} -> {result['server_rss_peak_mib']} MiB "
            f"({time.monotonic() - started:.1f} s)"
        )
    baseline = results[0]["requests_per_s"]
    per_cpu_baseline = results[0]["requests_per_cpu_s"]
    for result in results:
        result["ratio_to_healthz"] = rounded(ratio(result["requests_per_s"], baseline), 3)
        # The same ratio per CPU-second of the server: what a request costs against a
        # /healthz request, whatever share of a core other work left each scenario.
        result["ratio_to_healthz_per_cpu_s"] = rounded(
            ratio(result["requests_per_cpu_s"], per_cpu_baseline), 3
        )
    log(
        "  requests per CPU-second of the server, x /healthz: "
        + ", ".join(f"{r['scenario']} {r['ratio_to_healthz_per_cpu_s']}" for r in results[1:])
    )
    slope = memory_slope(cleanup, workdir, options, results, log)
    producer = producer_baseline(cleanup, workdir, options, log)
    return {
        "scenarios": results,
        "memory_slope": slope,
        "producer_baseline": producer,
        "figures": figures(results, slope, producer),
    }


def producer_baseline(
    cleanup: Cleanup, workdir: Path, options: LoadOptions, log: Any
) -> dict[str, Any]:
    """The /events records published by a bare producer process (bench.producer_baseline)
    at the same concurrency, on a fresh broker: the client + broker limit of this machine."""
    log(f"  bare producer, /events records at {options.concurrency} in flight ...")
    local = Cleanup()
    cleanup.add("tear down the producer baseline", local.close)
    try:
        broker = start_broker(local)
        prefix = fresh_topics(broker)
        argv = [
            python(), "-m", "bench.producer_baseline", "--bootstrap", broker.bootstrap,
            "--topic-prefix", prefix, "--concurrency", str(options.concurrency),
            "--warmup", str(options.warmup), "--duration", str(options.duration),
            "--pool", str(options.pool),
        ]  # fmt: skip
        proc = local.spawn(
            argv,
            env=child_env({}),
            cwd=workdir,
            log=workdir / "producer-baseline.log",
            stdout=subprocess.PIPE,
        )
        watched = {"producer": psutil.Process(proc.pid)}
        if (pid := broker_pid(broker)) is not None:
            watched["broker"] = psutil.Process(pid)
        traces = monitor.watch(proc, watched, timeout=options.warmup + options.duration + 90)
        output = proc.stdout.read() if proc.stdout is not None else b""
        if proc.wait() != 0 or not output:
            raise RuntimeError(f"the producer baseline failed; see {workdir}")
        result: dict[str, Any] = orjson.loads(output)
        start, end = result["window"]
        cores = traces["producer"].cpu_share(start, end)
        result["producer_cpu_cores"] = rounded(cores)
        # Records per CPU-second: comparable with the server's even when other work on the
        # machine gave the two processes different shares of a core.
        result["records_per_cpu_s"] = round(result["records_per_s"] / cores) if cores else None
        if "broker" in traces:
            result["broker_peak_rss_mib"] = round(traces["broker"].peak_rss / MIB, 1)
        log(f"    {result['records_per_s']} records/s, p99 {result['latency_ms']['p99']} ms")
        return result
    finally:
        local.close()


def figures(
    results: list[dict[str, Any]], slope: dict[str, Any], producer: dict[str, Any]
) -> dict[str, float | None]:
    """The ingest keys of the headline JSON line (bench/figures.py)."""
    by_name = {r["scenario"]: r for r in results}
    events = by_name.get("POST /events", {})
    revenuecat = by_name.get("POST /webhooks/revenuecat", {})
    high = slope["latency_ms"][1]
    return {
        "rc_vs_healthz": revenuecat.get("ratio_to_healthz"),
        "events_vs_producer": rounded(
            ratio(events.get("records_per_s"), producer.get("records_per_s")), 3
        ),
        "events_p99_over_p50_at_128": rounded(ratio(high["p99"], high["p50"]), 2),
        "events_kib_per_inflight": slope["kib_per_extra_inflight_request"],
    }


def memory_slope(
    cleanup: Cleanup,
    workdir: Path,
    options: LoadOptions,
    results: list[dict[str, Any]],
    log: Any,
) -> dict[str, Any]:
    """(peak - idle) / in-flight also counts what any load allocates once (producer
    buffers, caches); the largest scenario again at 4x the connections separates the two:
    the slope between the two peaks is the memory one more in-flight request costs."""
    scenario = max(SCENARIOS, key=lambda s: s.records_per_request)
    low = next(r for r in results if r["scenario"] == scenario.name)
    high_options = replace(
        options, concurrency=options.concurrency * 4, duration=min(options.duration, 5.0)
    )
    log(f"  {scenario.name} at {high_options.concurrency} connections (memory slope) ...")
    high = run_scenario(cleanup, workdir, scenario, high_options)
    extra = high_options.concurrency - options.concurrency
    slope = (high["server_rss_peak_mib"] - low["server_rss_peak_mib"]) * 1024 / extra
    return {
        "scenario": scenario.name,
        "concurrency": [options.concurrency, high_options.concurrency],
        "peak_rss_mib": [low["server_rss_peak_mib"], high["server_rss_peak_mib"]],
        "requests_per_s": [low["requests_per_s"], high["requests_per_s"]],
        "latency_ms": [low["latency_ms"], high["latency_ms"]],
        "kib_per_extra_inflight_request": round(slope, 1),
    }
