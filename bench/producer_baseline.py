"""The bare-producer baseline of ``POST /events``, run as its own process.

``python -m bench.producer_baseline``: what one process that does nothing but publish can
push through the client library and the broker on this machine. It builds the same
``/events`` requests as the HTTP scenario (:func:`bench.payloads.events_batch`) and cuts
them into records with the server's own ``ingest.providers.events.build_records``, all
before the clock starts. Then ``concurrency`` workers each publish one request's records
at a time with a plain ``AIOKafkaProducer.send`` per record (the producer of
``core.kafka.make_producer``, ``acks=all``) and wait for every acknowledgement before the
next request, exactly the closed loop the HTTP load generator drives. No HTTP, no
verification, no validation: ``/events`` records/s divided by this is the share of the
client + broker limit the server keeps (``events_vs_producer``).

Phases as in :mod:`bench.loadgen`: ``warmup`` seconds discarded, ``duration`` measured;
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from array import array
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.loadgen import print_result
from bench.payloads import EVENTS_PER_BATCH, events_batch
from bench.stats import latency_summary
from contract.records import Record, rfc3339
from contract.topics import topic_name
from core.kafka import make_producer
from core.settings import Settings
from ingest.providers.events import build_records


def prebuilt(pool: int) -> list[list[Record]]:
    """``pool`` requests' records, as the server would publish them."""
    received_at = rfc3339(datetime.now(UTC))
    return [build_records(orjson.loads(events_batch(i).body), received_at) for i in range(pool)]


async def run(
    settings: Settings,
    requests: list[list[Record]],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    producer = make_producer(settings)
    await producer.start()
    try:
        # Topic metadata first: the first send of each topic waits for it otherwise.
        for stream in {r.stream for r in requests[0]}:
            await producer.partitions_for(topic_name(settings.topic_prefix, stream))
        now = time.perf_counter()
        measure_from, measure_until = now + warmup, now + warmup + duration
        latencies = array("d")
        records = 0

        async def worker(first: int) -> None:
            nonlocal records
            index = first
            while (started := time.perf_counter()) < measure_until:
                batch = requests[index % len(requests)]
                index += 1
                futures = [
                    await producer.send(
                        topic_name(settings.topic_prefix, r.stream),
                        value=r.value,
                        key=r.key,
                        headers=list(r.headers),
                    )
                    for r in batch
                ]
                await asyncio.gather(*futures)
                finished = time.perf_counter()
                if measure_from <= finished <= measure_until:
                    latencies.append(finished - started)
                    records += len(batch)

        stride = max(1, len(requests) // concurrency)
        async with asyncio.timeout(warmup + duration + 60):
            await asyncio.gather(*(worker(i * stride) for i in range(concurrency)))
    finally:
        await producer.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "concurrency": concurrency,
        # CLOCK_MONOTONIC, as in bench.loadgen: the caller lines its CPU samples up with it.
        "window": [measure_from, measure_until],
        "measured_s": duration,
        "requests": len(latencies),
        "records": records,
        "records_per_s": round(records / duration, 1),
        "requests_per_s": round(len(latencies) / duration, 1),
        "latency_ms": latency_summary(latencies),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.producer_baseline")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic-prefix", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--pool", type=int, default=1000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings(
        kafka_bootstrap_servers=args.bootstrap,
        kafka_idempotent_producer=False,
        topic_prefix=args.topic_prefix,
    )
    requests = prebuilt(args.pool)
    if any(len(r) != EVENTS_PER_BATCH for r in requests):
        print("producer_baseline: a request did not build 50 records", file=sys.stderr)
        return 1
    coroutine = run(
        settings,
        requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=args.duration,
    )
    print_result(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
