"""HTTP/1.1 load generator, run as its own process: ``python -m bench.loadgen``.

It runs apart from the server so that neither shares the other's event loop; both still
share the machine's cores (docs/benchmarks.md). Requests are pre-built raw bytes (signed
ahead of time, see :mod:`bench.payloads`) and replayed round-robin over ``concurrency``
keep-alive connections, one request in flight per connection (closed loop). A minimal
client on asyncio streams (uvloop when installed) keeps the generator's own cost per
request far below the server's, which a general-purpose client would not.

Phases: connect, ``warmup`` seconds whose responses are discarded, then ``duration``
seconds measured; responses completing inside the measured window are counted. The run is
bounded in time and in count (``max_requests``). The result is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import resource
import struct
import sys
import time
from array import array
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.stats import latency_summary

_FRAME = struct.Struct(">I")


def write_requests(path: Path, requests: list[bytes]) -> None:
    """Length-prefixed frames: the file format :func:`read_requests` reads."""
    with path.open("wb") as out:
        for request in requests:
            out.write(_FRAME.pack(len(request)))
            out.write(request)


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    requests: list[bytes] = []
    at = 0
    while at < len(data):
        (size,) = _FRAME.unpack_from(data, at)
        at += _FRAME.size
        requests.append(data[at : at + size])
        at += size
    return requests


class ProtocolError(Exception):
    """The server answered something this client does not parse (no Content-Length)."""


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        raise ProtocolError(f"response without Content-Length: {head[:200]!r}")
    end = lowered.index(b"\r\n", at + 2)
    length = int(lowered[at + 17 : end])
    if length:
        await reader.readexactly(length)
    return status


@dataclass(slots=True)
class Window:
    measure_from: float
    measure_until: float
    max_requests: int
    latencies: array[float] = field(default_factory=lambda: array("d"))
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0

    @property
    def full(self) -> bool:
        return len(self.latencies) >= self.max_requests

    def record(self, started: float, finished: float, status: int) -> None:
        if self.measure_from <= finished <= self.measure_until and not self.full:
            self.latencies.append(finished - started)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def error(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


async def worker(port: int, requests: list[bytes], first: int, window: Window) -> None:
    """One keep-alive connection, one request in flight, until the window closes."""
    index = first
    clock = time.perf_counter
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while clock() < window.measure_until and not window.full:
            request = requests[index % len(requests)]
            index += 1
            started = clock()
            try:
                writer.write(request)
                status = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ProtocolError) as exc:
                window.error(exc)
                writer.close()
                window.reconnects += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            window.record(started, clock(), status)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run(
    port: int,
    requests: list[bytes],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    max_requests: int,
) -> dict[str, Any]:
    now = time.perf_counter()
    window = Window(now + warmup, now + warmup + duration, max_requests)
    # Spread the connections over the pool so concurrent requests carry different bodies.
    stride = max(1, len(requests) // concurrency)
    workers = [worker(port, requests, i * stride, window) for i in range(concurrency)]
    async with asyncio.timeout(warmup + duration + 60):
        await asyncio.gather(*workers)
    measured = min(time.perf_counter(), window.measure_until) - window.measure_from
    usage = resource.getrusage(resource.RUSAGE_SELF)
    completed = len(window.latencies)
    return {
        "completed": completed,
        "measured_s": round(measured, 3),
        # CLOCK_MONOTONIC, shared by every process: the caller lines its samples up with it.
        "window": [window.measure_from, window.measure_from + measured],
        "requests_per_s": completed / measured if measured > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(window.statuses.items())},
        "errors": window.errors,
        "reconnects": window.reconnects,
        "latency_ms": latency_summary(window.latencies),
        "loadgen_cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=Path, required=True, help="file of raw requests")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    requests = read_requests(args.requests)
    if not requests:
        print("loadgen: the request file is empty", file=sys.stderr)
        return 2
    coroutine = run(
        args.port,
        requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=args.duration,
        max_requests=args.max_requests,
    )
    print_result(coroutine)
    return 0


def print_result(coroutine: Coroutine[Any, Any, Any]) -> None:
    """Run a load's coroutine (on uvloop when installed, as the server runs) and write its
    result to stdout as JSON, for the parent benchmark to read."""
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
