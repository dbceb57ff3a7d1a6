"""``python -m bench``: every benchmark in one run, figures and ratios, no pass/fail.

python -m bench              # default: ~2.5 minutes on 2 cores
python -m bench --quick      # ~30 s: shorter loads, fewer events
python -m bench --only ingest --duration 20 --concurrency 64
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import consumer_bench, e2e_bench, figures, ingest_bench, parked_bench, report
from bench.procs import REPO, Cleanup

DEFAULT_OUTPUT = REPO / "bench" / "results" / "latest.json"
PARTS = ("ingest", "consume", "parked", "e2e")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~30 s run: 2.5 s loads, 3000 events")
    parser.add_argument("--only", choices=PARTS, help="run one benchmark")
    parser.add_argument("--duration", type=float, help="measured seconds per HTTP scenario (10)")
    parser.add_argument("--warmup", type=float, help="discarded seconds before each (1)")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="per scenario")
    parser.add_argument("--pool", type=int, help="distinct signed requests per scenario (1000)")
    parser.add_argument("--events", type=int, help="events per consumer source (20000)")
    parser.add_argument("--users", type=int, default=2000, help="seeded user profiles")
    parser.add_argument("--parked", type=int, help="parked rows for the parked benchmark (500000)")
    parser.add_argument("--e2e-rate", type=float, default=2000.0, help="end-to-end events/s")
    parser.add_argument("--e2e-duration", type=float, help="end-to-end measured seconds (30)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results")
    return parser


def _pick(value: Any, default: Any, quick: Any, is_quick: bool) -> Any:
    if value is not None:
        return value
    return quick if is_quick else default


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C: unwind, stop every child, remove every temp dir.
    raise KeyboardInterrupt


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, cleanup: Cleanup) -> dict[str, Any]:
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "quick": args.quick,
    }
    if args.only in (None, "ingest"):
        load = ingest_bench.LoadOptions(
            duration=_pick(args.duration, 10.0, 2.5, args.quick),
            warmup=_pick(args.warmup, 1.0, 0.5, args.quick),
            concurrency=args.concurrency,
            max_requests=args.max_requests,
            pool=_pick(args.pool, 1000, 300, args.quick),
        )
        results["options_ingest"] = _fields(load)
        log("benchmark 1: ingest HTTP")
        results["ingest"] = ingest_bench.run(cleanup, load, log)
        cleanup.close()  # the consumer benchmark gets the machine to itself
    if args.only in (None, "consume"):
        options = consumer_bench.ConsumeOptions(
            events=_pick(args.events, 20_000, 3_000, args.quick), users=args.users, timeout=300
        )
        results["options_consume"] = _fields(options)
        log("benchmark 2: consumer apply")
        results["consume"] = consumer_bench.run(cleanup, options, log)
        cleanup.close()
    if args.only in (None, "parked"):
        parked = parked_bench.ParkedOptions(
            parked=_pick(args.parked, 500_000, 50_000, args.quick),
            events=_pick(args.events, 20_000, 2_000, args.quick),
            users=args.users,
            ready=(0, 1_000, 10_000) if not args.quick else (0, 100, 1_000),
            timeout=300,
        )
        results["options_parked"] = _fields(parked)
        log("benchmark 3: parked events")
        results["parked"] = parked_bench.run(cleanup, parked, log)
        cleanup.close()
    if args.only in (None, "e2e"):
        e2e = e2e_bench.E2EOptions(
            rate=args.e2e_rate,
            duration=_pick(args.e2e_duration, 30.0, 5.0, args.quick),
            warmup=_pick(None, 3.0, 1.0, args.quick),
            backlog=_pick(None, 20_000, 2_000, args.quick),
            timeout=300,
        )
        results["options_e2e"] = _fields(e2e)
        log("benchmark 4: end to end (HTTP -> Kafka -> two consumers -> PostgreSQL)")
        results["e2e"] = e2e_bench.run(cleanup, e2e, log)
    return results


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    cleanup = Cleanup()
    started = time.monotonic()
    try:
        results = run(args, cleanup)
    except KeyboardInterrupt:
        log("interrupted; stopping every process this run started")
        return 130
    finally:
        cleanup.close()
    results["total_s"] = round(time.monotonic() - started, 1)
    results["figures"] = figures.headline(results)
    report.write_json(args.output, results)
    print(report.render(results))
    print(f"\ntotal {results['total_s']} s; JSON: {args.output}")
    # The last line: the headline figures of this run, one JSON object (bench/figures.py).
    print(figures.json_line(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
