"""``ingester``: the one entry point (docs/contract.md §7).

Exit codes: 0 success, 1 failure, 2 bad usage; every error is one line on stderr, in the
form ``ingester VERB: what went wrong``, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from contract.topics import STREAMS
from core.settings import Settings, find_dev_env_file, load
from core.version import version
from ingester import operator_verbs, samples
from ingester.output import explain, fail
from ingester.rcsync import STANDIN_PORT

# ingester.report.FORMATS, repeated so that starting the CLI does not load the database
# driver; tests/unit/test_cli.py keeps the two equal.
REPORT_FORMATS = ("table", "json", "html")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _only(value: str) -> tuple[str, ...]:
    chosen = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in chosen if v not in STREAMS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown stream {', '.join(unknown) or value!r}; choose from {', '.join(STREAMS)}"
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
    parser.add_argument("--version", action="version", version=f"ingester {version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    verbs.add_parser("serve", help="run the HTTP ingest service on PORT").set_defaults(run=_serve)
    consume = verbs.add_parser("consume", help="run the consumers")
    consume.set_defaults(run=_consume)
    consume.add_argument(
        "--only", type=_only, default=(), help="comma list of " + ",".join(STREAMS)
    )
    verbs.add_parser("migrate", help="apply pending sql/ migrations").set_defaults(run=_migrate)

    topics = verbs.add_parser("topics", help="manage Kafka topics")
    topics_verbs = topics.add_subparsers(dest="action", required=True, parser_class=_Parser)
    topics_verbs.add_parser("create", help="create every topic that does not exist").set_defaults(
        run=_topics_create
    )

    dev = verbs.add_parser("dev", help="run the whole service on embedded Postgres and Kafka")
    dev.set_defaults(run=_dev)
    dev.add_argument(
        "--rc-sync",
        action="store_true",
        help="also run rc-sync, against a local stand-in of RevenueCat's API",
    )

    rc_sync = verbs.add_parser(
        "rc-sync", help="write our emails, names and environment back to RevenueCat"
    )
    rc_sync.set_defaults(run=_rc_sync)
    rc_sync.add_argument(
        "--dry-run", action="store_true", help="print the calls it would make; send nothing"
    )
    standin = verbs.add_parser("standin", help="stand-ins of third-party APIs, for make dev")
    standin_verbs = standin.add_subparsers(dest="action", required=True, parser_class=_Parser)
    revenuecat = standin_verbs.add_parser(
        "revenuecat", help="RevenueCat's subscriber attributes endpoint, on loopback"
    )
    revenuecat.set_defaults(run=_standin_revenuecat)
    revenuecat.add_argument(
        "--port", type=_positive, default=STANDIN_PORT, help=f"port (default {STANDIN_PORT})"
    )

    sample = verbs.add_parser("send-sample", help="post a correctly signed sample webhook")
    sample.set_defaults(run=_send_sample)
    sample.add_argument("provider", choices=samples.PROVIDERS, help="which sample to post")
    sample.add_argument("--url", default=None, help="base URL (default http://127.0.0.1:PORT)")

    dlq = verbs.add_parser("dlq", help="dead letters")
    dlq_verbs = dlq.add_subparsers(dest="action", required=True, parser_class=_Parser)
    dlq_list = dlq_verbs.add_parser("list", help="show dead letters, oldest first")
    dlq_list.set_defaults(run=_dlq_list)
    dlq_list.add_argument(
        "--limit", type=_positive, default=None, help="show at most N dead letters (default all)"
    )
    replay = dlq_verbs.add_parser("replay", help="re-publish dead letters to their source topic")
    replay.set_defaults(run=_dlq_replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be replayed, publish nothing"
    )
    replay.add_argument(
        "--limit", type=_positive, default=None, help="replay at most N dead letters (default all)"
    )

    pending = verbs.add_parser("pending", help="events waiting for their target row")
    pending_verbs = pending.add_subparsers(dest="action", required=True, parser_class=_Parser)
    pending_verbs.add_parser("list", help="counts by reason and the oldest").set_defaults(
        run=_pending_list
    )
    retry = pending_verbs.add_parser("retry", help="apply every pending event that can apply now")
    retry.set_defaults(run=_pending_retry)
    retry.add_argument(
        "--expired", action="store_true", help="first put the expired events back in the table"
    )

    inbox = verbs.add_parser("inbox", help="the processed-event inbox")
    inbox_verbs = inbox.add_subparsers(dest="action", required=True, parser_class=_Parser)
    prune = inbox_verbs.add_parser(
        "prune", help="forget events older than the topic retention; age out skipped and dead"
    )
    prune.set_defaults(run=_inbox_prune)
    prune.add_argument(
        "--older-than-days",
        type=_positive,
        default=None,
        metavar="N",
        help="forget events processed more than N days ago (default INBOX_RETENTION_DAYS)",
    )

    experiments = verbs.add_parser("experiments", help="A/B testing")
    exp_verbs = experiments.add_subparsers(dest="action", required=True, parser_class=_Parser)
    report = exp_verbs.add_parser("report", help="results of one experiment")
    report.set_defaults(run=_experiments_report)
    report.add_argument("name", help="the experiment's name (experiments.name)")
    report.add_argument(
        "--format", choices=REPORT_FORMATS, default="table", help="output format (default table)"
    )
    report.add_argument(
        "--method",
        choices=("sequential", "fixed"),
        default="sequential",
        help="sequential: always-valid, read it any day (default); fixed: one look at the "
        "planned sample size",
    )
    report.add_argument(
        "--adjust",
        choices=("holm", "bh", "none"),
        default="holm",
        help="p-value adjustment over several variants (default holm)",
    )
    report.add_argument(
        "--winsorize",
        type=float,
        default=None,
        metavar="PCT",
        help="cap each user's net revenue at this percentile of the buyers' (e.g. 99)",
    )
    operator_verbs.add_to(verbs)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.services import serve

    return serve(settings)


def _consume(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.services import consume

    settings.require_database_url()  # missing servers: the one-line hint, before any log
    settings.require_kafka()
    return asyncio.run(consume(settings, args.only))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.commands import migrate_command

    return asyncio.run(migrate_command(settings))


def _topics_create(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.commands import topics_create_command

    return asyncio.run(topics_create_command(settings))


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.dev import run_dev

    return run_dev(settings, rc_sync=args.rc_sync)


def _rc_sync(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.rcsync import rc_sync

    return asyncio.run(rc_sync(settings, dry_run=args.dry_run))


def _standin_revenuecat(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.rcsync import standin_revenuecat

    return asyncio.run(standin_revenuecat(settings, args.port))


def _send_sample(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or f"http://127.0.0.1:{settings.port}"
    return asyncio.run(samples.send_sample(settings, args.provider, url, env_file=args.env_file))


def _dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.dlq import dlq_list

    return asyncio.run(dlq_list(settings, args.limit))


def _dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.dlq import dlq_replay

    return asyncio.run(dlq_replay(settings, args.dry_run, args.limit))


def _pending_list(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.bookkeeping import pending_list

    return asyncio.run(pending_list(settings))


def _pending_retry(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.bookkeeping import pending_retry

    return asyncio.run(pending_retry(settings, expired=args.expired))


def _inbox_prune(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.bookkeeping import inbox_prune

    days = args.older_than_days or settings.inbox_retention_days
    return asyncio.run(inbox_prune(settings, days))


def _experiments_report(args: argparse.Namespace, settings: Settings) -> int:
    from ingester.report import report
    from ingester.report.model import ReportOptions

    options = ReportOptions(args.method, args.adjust, args.winsorize)
    return asyncio.run(report(settings, args.name, args.format, options))


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    """Run the verb the parser chose; each verb imports only what it uses."""
    run: Callable[[argparse.Namespace, Settings], int] = args.run
    return run(args, settings)


# Verbs that run until stopped and log JSON lines to stderr; the others are one-shot.
SERVICES = ("serve", "consume", "dev", "rc-sync", "standin", "console")


def _quiet_logs(level: str) -> None:
    """A one-shot verb reports a failure as one line of its own; library log records (each
    of aiokafka's reconnect attempts, say) would add more, so they are dropped unless
    LOG_LEVEL=DEBUG asks for them."""
    if level == "DEBUG":
        from core.logs import configure

        configure(level)
    else:
        logging.getLogger().addHandler(logging.NullHandler())


def _verb(args: argparse.Namespace) -> str:
    return " ".join(w for w in (args.verb, getattr(args, "action", None)) if w)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `dev` writes the env file itself; reading a stale one would hide the real env.
    env_file: Path | None = None if args.verb == "dev" else find_dev_env_file()
    args.env_file = env_file
    try:
        settings = load(env_file=env_file)
        if args.verb not in SERVICES:
            _quiet_logs(settings.log_level)
        return dispatch(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message, exit_code = explain(exc, env_file)
        return fail(_verb(args), message, exit_code)


if __name__ == "__main__":
    sys.exit(main())
