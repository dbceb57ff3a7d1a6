"""``ingester``: the one entry point (docs/contract.md §7).

Exit codes: 0 success, 1 failure, 2 bad usage; every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from core.settings import DEV_ENV_FILE, ConfigError, Settings, load

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

    verbs.add_parser("serve", help="run the HTTP ingest service on PORT").set_defaults(run=_serve)
    consume = verbs.add_parser("consume", help="run the consumers")
    consume.set_defaults(run=_consume)
    consume.add_argument(
        "--only", type=_only, default=(), help="comma list of " + ",".join(SOURCES)
    )
    verbs.add_parser("migrate", help="apply pending sql/ migrations").set_defaults(run=_migrate)

    topics = verbs.add_parser("topics", help="manage Kafka topics")
    topics_verbs = topics.add_subparsers(dest="action", required=True, parser_class=_Parser)
    topics_verbs.add_parser("create", help="create every topic that does not exist").set_defaults(
        run=_topics_create
    )

    verbs.add_parser(
        "dev", help="run the whole service on embedded Postgres and Kafka"
    ).set_defaults(run=_dev)

    sample = verbs.add_parser("send-sample", help="post a correctly signed sample webhook")
    sample.set_defaults(run=_send_sample)
    sample.add_argument("provider", choices=SAMPLES)
    sample.add_argument("--url", default=None, help="base URL (default http://127.0.0.1:PORT)")

    dlq = verbs.add_parser("dlq", help="dead letters")
    dlq_verbs = dlq.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dlq_verbs.add_parser("list", help="show dead letters").set_defaults(run=_dlq_list)
    replay = dlq_verbs.add_parser("replay", help="re-publish dead letters to their source topic")
    replay.set_defaults(run=_dlq_replay)
    replay.add_argument("--dry-run", action="store_true")
    replay.add_argument("--limit", type=_positive, default=None)

    pending = verbs.add_parser("pending", help="events waiting for their target row")
    pending_verbs = pending.add_subparsers(dest="action", required=True, parser_class=_Parser)
    pending_verbs.add_parser("list", help="counts by reason and the oldest").set_defaults(
        run=_pending_list
    )
    pending_verbs.add_parser(
        "retry", help="apply every pending event that can apply now"
    ).set_defaults(run=_pending_retry)

    inbox = verbs.add_parser("inbox", help="the processed-event inbox")
    inbox_verbs = inbox.add_subparsers(dest="action", required=True, parser_class=_Parser)
    prune = inbox_verbs.add_parser("prune", help="forget events older than the topic retention")
    prune.set_defaults(run=_inbox_prune)
    prune.add_argument("--older-than-days", type=_positive, default=None)

    experiments = verbs.add_parser("experiments", help="A/B testing")
    exp_verbs = experiments.add_subparsers(dest="action", required=True, parser_class=_Parser)
    report = exp_verbs.add_parser("report", help="results of one experiment")
    report.set_defaults(run=_experiments_report)
    report.add_argument("name")
    report.add_argument("--format", choices=REPORT_FORMATS, default="table")
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.serve import run

    return run(settings)


def _consume(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import consume

    return asyncio.run(consume(settings, args.only))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.commands import migrate_command

    return asyncio.run(migrate_command(settings))


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.commands import topics_create_command

    return asyncio.run(topics_create_command(settings))


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.dev import run_dev

    return run_dev(settings)


def _send_sample(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.samples import send_sample

    url = args.url or f"http://127.0.0.1:{settings.port}"
    return asyncio.run(send_sample(settings, args.provider, url))


def _dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import dlq_list

    return asyncio.run(dlq_list(settings))


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import dlq_replay

    return asyncio.run(dlq_replay(settings, args.dry_run, args.limit))


def _pending_list(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import pending_list

    return asyncio.run(pending_list(settings))


def _pending_retry(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import pending_retry

    return asyncio.run(pending_retry(settings))


def _inbox_prune(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.cli import inbox_prune

    days = args.older_than_days or settings.inbox_retention_days
    return asyncio.run(inbox_prune(settings, days))


def _experiments_report(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.report import report

    return asyncio.run(report(settings, args.name, args.format))


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run the verb the parser chose; each verb imports only what it uses."""
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    return run(args, settings)


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
