"""``ingester``: the one entry point (SPEC section 7).

Exit codes: 0 success, 1 failure, 2 bad usage; every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from ingester.settings import DEV_ENV_FILE, ConfigError, Settings, load

SOURCES = ("revenuecat", "klaviyo", "kit", "experiments")
SAMPLES = ("revenuecat", "klaviyo", "klaviyo-flow", "kit", "events")
REPORT_FORMATS = ("table", "json", "html")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _only(value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in SOURCES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown source {', '.join(unknown) or value!r}; choose from {', '.join(SOURCES)}"
        )
    return chosen


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ingester", description="Webhook ingester: HTTP -> Kafka -> PostgreSQL.")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    verbs.add_parser("serve", help="run the HTTP ingest service on PORT")
    consume = verbs.add_parser("consume", help="run the consumers")
    consume.add_argument(
        "--only", type=_only, default=(), help="comma list of " + ",".join(SOURCES)
    )
    verbs.add_parser("migrate", help="apply pending sql/ migrations")

    topics = verbs.add_parser("topics", help="manage Kafka topics")
    topics_verbs = topics.add_subparsers(dest="action", required=True, parser_class=_Parser)
    topics_verbs.add_parser("create", help="create every topic that does not exist")

    verbs.add_parser("dev", help="run the whole service on embedded Postgres and Kafka")

    sample = verbs.add_parser("send-sample", help="post a correctly signed sample webhook")
    sample.add_argument("provider", choices=SAMPLES)
    sample.add_argument("--url", default=None, help="base URL (default http://127.0.0.1:PORT)")

    dlq = verbs.add_parser("dlq", help="dead letters")
    dlq_verbs = dlq.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dlq_verbs.add_parser("list", help="show dead letters")
    replay = dlq_verbs.add_parser("replay", help="re-publish dead letters to their source topic")
    replay.add_argument("--dry-run", action="store_true")
    replay.add_argument("--limit", type=_positive, default=None)

    pending = verbs.add_parser("pending", help="events waiting for their target row")
    pending_verbs = pending.add_subparsers(dest="action", required=True, parser_class=_Parser)
    pending_verbs.add_parser("list", help="counts by reason and the oldest")
    pending_verbs.add_parser("retry", help="apply every pending event that can apply now")

    experiments = verbs.add_parser("experiments", help="A/B testing")
    exp_verbs = experiments.add_subparsers(dest="action", required=True, parser_class=_Parser)
    report = exp_verbs.add_parser("report", help="results of one experiment")
    report.add_argument("name")
    report.add_argument("--format", choices=REPORT_FORMATS, default="table")
    return parser


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run one verb; imports are local so each verb loads only what it uses."""
    verb = args.verb
    if verb == "serve":
        from ingest.serve import run

        return run(settings)
    if verb == "consume":
        from consumers.cli import consume

        return asyncio.run(consume(settings, args.only))
    if verb == "migrate":
        from ingester.commands import migrate_command

        return asyncio.run(migrate_command(settings))
    if verb == "topics":
        from ingester.commands import topics_create_command

        return asyncio.run(topics_create_command(settings))
    if verb == "dev":
        from ingester.dev import run_dev

        return run_dev(settings)
    if verb == "send-sample":
        from ingest.samples import send_sample

        url = args.url or f"http://127.0.0.1:{settings.port}"
        return asyncio.run(send_sample(settings, args.provider, url))
    if verb == "dlq":
        from consumers import cli as consumer_cli

        if args.action == "list":
            return asyncio.run(consumer_cli.dlq_list(settings))
        return asyncio.run(consumer_cli.dlq_replay(settings, args.dry_run, args.limit))
    if verb == "pending":
        from consumers import cli as consumer_cli

        if args.action == "list":
            return asyncio.run(consumer_cli.pending_list(settings))
        return asyncio.run(consumer_cli.pending_retry(settings))
    if verb == "experiments":
        from consumers.report import report

        return asyncio.run(report(settings, args.name, args.format))
    raise AssertionError(f"unhandled verb {verb}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # `dev` writes the env file itself; reading a stale one would hide the real env.
        settings = load(env_file=None if args.verb == "dev" else DEV_ENV_FILE)
        return dispatch(args, settings)
    except ConfigError as exc:
        print(f"ingester: configuration error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
