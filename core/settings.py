"""Configuration, read from the environment once into one frozen object.

Nothing else in the project reads ``os.environ``: the CLI calls :func:`load` and passes the
result down. Each field below is the one declaration of its variable (``core.config``): the
parser, its error messages, :data:`ENV_VARS` and the settings tables of the docs
(``python -m ingester.settings_tables --markdown [group ...]``, ``--write FILE ...`` to refill
a doc's; ``make docs`` refills them all)
are derived from it. Secrets are kept out
of ``repr`` so a logged settings object never leaks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.config import (
    Choice,
    CommaList,
    Flag,
    Group,
    Integer,
    MiB,
    Number,
    OptionalText,
    Text,
    declared,
    fill_tables,
    markdown,
    parse,
)
from core.config import ConfigError as ConfigError  # raised here too; callers catch it from here

ENVIRONMENTS = ("dev", "production")
COMPRESSIONS = ("none", "gzip", "lz4", "zstd")
DEV_ENV_FILE = Path(".dev/stack.env")

SERVERS = Group("servers", "Servers and deployment")
ENDPOINTS = Group("endpoints", "Endpoints and their secrets")
INGEST = Group("ingest", "Ingest: limits and timeouts")
KAFKA = Group("kafka", "Kafka producers and topics")
CONSUMERS = Group("consumers", "Consumers: group, batches, shutdown, health")
PENDING = Group("pending", "Consumers: parked events")
POISON = Group("poison", "Consumers: poison and dead letters")
BOUNDS = Group("bounds", "Consumers: database and broker bounds")
RETENTION = Group("retention", "Retention (`ingester inbox prune`)")
RCSYNC = Group("rcsync", "rc-sync: RevenueCat attributes written back (`ingester rc-sync`)")
TELEMETRY = Group("telemetry", "Telemetry (OpenTelemetry)")
CONSOLE = Group("console", "Operator console (`ingester console`)")
GROUPS = (
    SERVERS,
    ENDPOINTS,
    INGEST,
    KAFKA,
    CONSUMERS,
    PENDING,
    POISON,
    BOUNDS,
    RETENTION,
    RCSYNC,
    CONSOLE,
    TELEMETRY,
)

_SERVER = "embedded in dev/test, required otherwise"
_ANSWERS_404 = "unset = 404"


class MissingSetting(ConfigError):
    """A variable the command needs is not set."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is not set")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    # Servers and deployment
    database_url: str | None = SERVERS.setting(
        "DATABASE_URL", OptionalText(), None, "PostgreSQL DSN", shown=_SERVER
    )
    kafka_bootstrap_servers: str | None = SERVERS.setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        OptionalText(),
        None,
        "the Kafka brokers, a comma list of `host:port`",
        shown=_SERVER,
    )
    topic_prefix: str = SERVERS.setting("TOPIC_PREFIX", Text(), "", "prefix for every topic name")
    environment: str = SERVERS.setting(
        "ENVIRONMENT",
        Choice(ENVIRONMENTS),
        "dev",
        "which environment this deployment serves (events for the other one are skipped)",
    )
    port: int = SERVERS.setting("PORT", Integer(1), 8000, "HTTP port of `ingester serve`")
    log_level: str = SERVERS.setting(
        "LOG_LEVEL",
        Text("upper"),
        "INFO",
        "level of the JSON logs on stderr (ingest logs accepted requests at `DEBUG` only;"
        " `ingest_requests_total` counts them)",
    )
    migrations_dir: str | None = SERVERS.setting(
        "MIGRATIONS_DIR",
        OptionalText(),
        None,
        "where `ingester migrate` finds `sql/`",
        shown="`sql/` of the source tree",
    )

    # Endpoints: one whose secret is unset answers 404
    revenuecat_authorization: str | None = ENDPOINTS.setting(
        "REVENUECAT_AUTHORIZATION",
        OptionalText(),
        None,
        "exact expected `Authorization` header value",
        secret=True,
        shown=_ANSWERS_404,
    )
    revenuecat_webhook_secret: str | None = ENDPOINTS.setting(
        "REVENUECAT_WEBHOOK_SECRET",
        OptionalText(),
        None,
        "optional HMAC secret (`X-RevenueCat-Webhook-Signature`)",
        secret=True,
        shown="unset = HMAC not checked",
    )
    klaviyo_webhook_secret: str | None = ENDPOINTS.setting(
        "KLAVIYO_WEBHOOK_SECRET",
        OptionalText(),
        None,
        "system-webhook signing secret",
        secret=True,
        shown=_ANSWERS_404,
    )
    klaviyo_flow_token: str | None = ENDPOINTS.setting(
        "KLAVIYO_FLOW_TOKEN",
        OptionalText(),
        None,
        "token in the flow-webhook path",
        secret=True,
        shown=_ANSWERS_404,
    )
    kit_webhook_secrets: tuple[str, ...] = ENDPOINTS.setting(
        "KIT_WEBHOOK_SECRET",
        CommaList(),
        (),
        "Kit signing secret(s), comma separated (rotation)",
        secret=True,
        shown=_ANSWERS_404,
    )
    kit_legacy_token: str | None = ENDPOINTS.setting(
        "KIT_LEGACY_TOKEN",
        OptionalText(),
        None,
        "token in the legacy Kit hook path",
        secret=True,
        shown="unset = legacy path 404",
    )
    events_api_key: str | None = ENDPOINTS.setting(
        "EVENTS_API_KEY",
        OptionalText(),
        None,
        "bearer key for first-party events",
        secret=True,
        shown=_ANSWERS_404,
    )
    signature_tolerance_s: int = ENDPOINTS.setting(
        "SIGNATURE_TOLERANCE_S",
        Integer(),
        300,
        "max clock skew for signed timestamps, either direction",
    )

    # Ingest: what one process takes on at once, and how long it waits for a client
    max_body_bytes: int = INGEST.setting(
        "MAX_BODY_BYTES", Integer(1), 5 * MiB, "request body limit; beyond it 413"
    )
    max_inflight_bytes: int = INGEST.setting(
        "MAX_INFLIGHT_BYTES",
        Integer(1),
        64 * MiB,
        "body bytes all requests of one ingest process may hold at once; beyond it 503 +"
        " `Retry-After` (at least `MAX_BODY_BYTES`)",
    )
    max_concurrent_requests: int = INGEST.setting(
        "MAX_CONCURRENT_REQUESTS",
        Integer(1),
        256,
        "webhook and event requests one ingest process serves at once; beyond it 503 +"
        " `Retry-After`",
    )
    max_header_bytes: int = INGEST.setting(
        "MAX_HEADER_BYTES",
        Integer(1024),
        16 * 1024,
        "request line + header bytes of one request; beyond it 431 and the connection is closed",
    )
    max_headers: int = INGEST.setting(
        "MAX_HEADERS",
        Integer(1),
        100,
        "header fields of one request; beyond it 431 and the connection is closed",
    )
    header_timeout_s: float = INGEST.setting(
        "HEADER_TIMEOUT_S",
        Number(positive=True),
        10.0,
        "time for a request's line and headers to arrive (from the connection or the"
        " request's first byte); then 408 and close",
    )
    body_timeout_s: float = INGEST.setting(
        "BODY_TIMEOUT_S",
        Number(positive=True),
        30.0,
        "time for a request's body to arrive after its headers; then 408 and close",
    )
    produce_timeout_s: float = INGEST.setting(
        "PRODUCE_TIMEOUT_S", Number(), 4.0, "how long a request waits for Kafka before 503"
    )
    # Bounded so that preStop + drain + flush stays inside the pod's termination grace period.
    producer_flush_timeout_s: float = INGEST.setting(
        "PRODUCER_FLUSH_TIMEOUT_S",
        Number(),
        5.0,
        "SIGTERM: after the in-flight requests, how long ingest flushes the producer",
    )

    # Kafka producers and topics
    kafka_idempotent_producer: bool = KAFKA.setting(
        "KAFKA_IDEMPOTENT_PRODUCER",
        Flag(),
        True,
        "`true`/`false`: whether producers are idempotent (a retried send is written once)",
        shown="`true` (the embedded broker needs `false`; `make dev` sets it)",
    )
    kafka_compression: str = KAFKA.setting(
        "KAFKA_COMPRESSION",
        Choice(COMPRESSIONS, lower=True),
        "none",
        "record batch compression of every producer (ingest, dead letters, replays)",
    )
    produce_buffer_bytes: int = KAFKA.setting(
        "PRODUCE_BUFFER_BYTES",
        Integer(1),
        32 * MiB,
        "bytes of records handed to Kafka and not yet acknowledged; beyond it requests wait"
        " their turn (first come, first served), then 503 at `PRODUCE_TIMEOUT_S`",
    )
    produce_linger_ms: float = KAFKA.setting(
        "PRODUCE_LINGER_MS",
        Number(),
        2.0,
        "how long a partition's lone record batch waits for more records when nothing is in flight",
    )
    topic_partitions: int = KAFKA.setting(
        "TOPIC_PARTITIONS", Integer(1), 6, "partitions of each topic `ingester topics create` makes"
    )
    topic_replication_factor: int = KAFKA.setting(
        "TOPIC_REPLICATION_FACTOR",
        Integer(1),
        1,
        "replication factor of each topic `ingester topics create` makes",
    )

    # Consumers: group, batches, shutdown, health
    consumer_group: str = CONSUMERS.setting(
        "CONSUMER_GROUP", Text(), "ingester", "Kafka consumer group of `ingester consume`"
    )
    consumer_batch_max: int = CONSUMERS.setting(
        "CONSUMER_BATCH_MAX", Integer(1), 500, "bounded batch: most records one fetch takes"
    )
    consumer_batch_wait_ms: int = CONSUMERS.setting(
        "CONSUMER_BATCH_WAIT_MS",
        Integer(),
        200,
        "bounded batch: how long a fetch waits for the first record (ms)",
    )
    consumer_apply_concurrency: int = CONSUMERS.setting(
        "CONSUMER_APPLY_CONCURRENCY",
        Integer(1),
        4,
        "transactions one consumer runs at once (one per source of a batch)",
    )
    shutdown_deadline_s: float = CONSUMERS.setting(
        "SHUTDOWN_DEADLINE_S",
        Number(),
        20.0,
        "SIGTERM: time to finish the batch and commit (and, in ingest, the in-flight requests)",
    )
    # Group membership: how soon a member that died without leaving is replaced.
    consumer_session_timeout_ms: int = CONSUMERS.setting(
        "CONSUMER_SESSION_TIMEOUT_MS",
        Integer(1),
        10_000,
        "how soon the group replaces a member that died without leaving (ms)",
    )
    consumer_heartbeat_interval_ms: int = CONSUMERS.setting(
        "CONSUMER_HEARTBEAT_INTERVAL_MS",
        Integer(1),
        3_000,
        "how often a member tells the group it is alive (ms)",
    )
    consumer_metrics_port: int = CONSUMERS.setting(
        "CONSUMER_METRICS_PORT", Integer(), 9100, "consumers' `/healthz` `/readyz` `/metrics`"
    )
    liveness_stall_s: float = CONSUMERS.setting(
        "LIVENESS_STALL_S",
        Number(),
        120.0,
        "the consumers' `/healthz` fails when the loop made no progress for this long while"
        " work waits (0 = off)",
    )

    # Consumers: parked events
    pending_retry_interval_s: float = PENDING.setting(
        "PENDING_RETRY_INTERVAL_S",
        Number(),
        60.0,
        "pause between the consumers' retry passes over parked events (a pass that stopped"
        " at its budget is followed at once)",
    )
    pending_max_age_days: float = PENDING.setting(
        "PENDING_MAX_AGE_DAYS",
        Number(),
        30.0,
        "parked events still waiting after this leave as skipped (`expired: <reason>`),"
        " replayable with `pending retry --expired`",
    )
    pending_backoff_max_s: float = PENDING.setting(
        "PENDING_BACKOFF_MAX_S",
        Number(),
        6 * 3600.0,
        "cap of a parked event's exponential backoff (60 s doubling) between retries when no"
        " wake-up comes",
        shown="21600 (6 h)",
    )
    pending_pass_max_rows: int = PENDING.setting(
        "PENDING_PASS_MAX_ROWS", Integer(1), 5_000, "budget of one retry pass: rows retried"
    )
    pending_pass_max_s: float = PENDING.setting(
        "PENDING_PASS_MAX_S", Number(), 10.0, "budget of one retry pass: seconds"
    )

    # Consumers: poison and dead letters
    poison_max_share: float = POISON.setting(
        "POISON_MAX_SHARE",
        Number(positive=True, maximum=1),
        0.5,
        "a source floods when more than this share of its records in the rolling window are"
        " poison (with at least `POISON_MIN_RECORDS` records and `POISON_MIN_DEAD` dead"
        " letters): the consumer holds if every source it handles floods, else alerts"
        " (`consumer_poison_flood{source}`) and dead-letters as usual; 1 turns the guard off",
    )
    poison_window_records: int = POISON.setting(
        "POISON_WINDOW_RECORDS",
        Integer(1),
        1000,
        "the flood guard's rolling window, per source: its last N records",
    )
    poison_window_s: float = POISON.setting(
        "POISON_WINDOW_S",
        Number(),
        300.0,
        "the flood guard's rolling window, per source: records no older than this",
    )
    poison_min_dead: int = POISON.setting(
        "POISON_MIN_DEAD",
        Integer(1),
        3,
        "fewest dead letters in a source's window that can count as a flood",
    )
    poison_min_records: int = POISON.setting(
        "POISON_MIN_RECORDS",
        Integer(1),
        100,
        "fewest records in a source's window that can count as a flood (a handful proves"
        " nothing; at most `POISON_WINDOW_RECORDS`)",
    )
    dlq_max_replays: int = POISON.setting(
        "DLQ_MAX_REPLAYS", Integer(), 3, "`dlq replay` refuses a record replayed this often"
    )

    # Every database and broker call is bounded (docs/consumers.md, "Timeouts").
    db_pool_max: int = BOUNDS.setting("DB_POOL_MAX", Integer(1), 10, "asyncpg pool size")
    db_command_timeout_s: float = BOUNDS.setting(
        "DB_COMMAND_TIMEOUT_S",
        Number(),
        10.0,
        "client-side bound on one database call (also the connect timeout)",
    )
    db_statement_timeout_s: float = BOUNDS.setting(
        "DB_STATEMENT_TIMEOUT_S",
        Number(),
        5.0,
        "server `statement_timeout` of the consumers' connections (0 = off)",
    )
    db_lock_timeout_s: float = BOUNDS.setting(
        "DB_LOCK_TIMEOUT_S",
        Number(),
        2.0,
        "server `lock_timeout`: a lock wait longer than this is an outage, retried",
    )
    db_idle_in_transaction_timeout_s: float = BOUNDS.setting(
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_S",
        Number(),
        30.0,
        "server `idle_in_transaction_session_timeout`",
    )
    db_transaction_timeout_s: float = BOUNDS.setting(
        "DB_TRANSACTION_TIMEOUT_S",
        Number(),
        30.0,
        "a consumer transaction still open after this is cut (connection closed) and retried"
        " as an outage",
    )
    kafka_io_timeout_s: float = BOUNDS.setting(
        "KAFKA_IO_TIMEOUT_S",
        Number(),
        10.0,
        "bound on each consumer fetch, offset commit and dead-letter publish",
    )

    # Retention
    inbox_retention_days: int = RETENTION.setting(
        "INBOX_RETENTION_DAYS",
        Integer(1),
        30,
        "`ingester inbox prune` forgets processed-event ids older than this (by default)",
    )
    skipped_retention_days: int = RETENTION.setting(
        "SKIPPED_RETENTION_DAYS",
        Integer(1),
        90,
        "`ingester inbox prune` deletes skipped (and expired) events older than this",
    )
    dead_letter_retention_days: int = RETENTION.setting(
        "DEAD_LETTER_RETENTION_DAYS",
        Integer(1),
        90,
        "`ingester inbox prune` deletes the local dead-letter log (`ingest_dead_letters`)"
        " older than this; the DLQ topic keeps its own retention",
    )

    # rc-sync (docs/rc-sync.md): what it may ask of RevenueCat's API, and how often.
    rc_sync_group: str = RCSYNC.setting(
        "RC_SYNC_GROUP", Text(), "ingester-rc-sync", "Kafka consumer group of `ingester rc-sync`"
    )
    revenuecat_api_key: str | None = RCSYNC.setting(
        "REVENUECAT_API_KEY",
        OptionalText(),
        None,
        "RevenueCat secret API key (v1) rc-sync sends as `Authorization: Bearer`",
        secret=True,
        shown="unset = rc-sync off",
    )
    revenuecat_api_url: str = RCSYNC.setting(
        "REVENUECAT_API_URL",
        Text(),
        "https://api.revenuecat.com/v1",
        "base URL of RevenueCat's REST API v1",
    )
    rc_sync_max_rps: float = RCSYNC.setting(
        "RC_SYNC_MAX_RPS",
        Number(positive=True),
        5.0,
        "most calls per second to RevenueCat, retries included, evenly spaced (token bucket"
        " of one)",
    )
    rc_sync_concurrency: int = RCSYNC.setting(
        "RC_SYNC_CONCURRENCY",
        Integer(1),
        4,
        "calls to RevenueCat in flight at once (never two for one customer)",
    )
    rc_sync_timeout_s: float = RCSYNC.setting(
        "RC_SYNC_TIMEOUT_S",
        Number(positive=True),
        10.0,
        "bound on one call to RevenueCat (connect, send, answer); then retried",
    )
    rc_sync_backoff_max_s: float = RCSYNC.setting(
        "RC_SYNC_BACKOFF_MAX_S",
        Number(positive=True),
        300.0,
        "cap of the exponential backoff (1 s doubling, jittered) after a 5xx, a timeout or a"
        " 401/403",
    )
    rc_sync_sweep_interval_s: float = RCSYNC.setting(
        "RC_SYNC_SWEEP_INTERVAL_S",
        Number(),
        600.0,
        "pause between two sweeps over every customer for changes made without a webhook"
        " (0 = no sweep)",
    )
    rc_sync_sweep_rows: int = RCSYNC.setting(
        "RC_SYNC_SWEEP_ROWS",
        Integer(1),
        500,
        "customers one sweep pass reads (a sweep is passes back to back to the table's end)",
    )
    rc_sync_metrics_port: int = RCSYNC.setting(
        "RC_SYNC_METRICS_PORT", Integer(), 9101, "rc-sync's `/healthz` `/readyz` `/metrics`"
    )

    # Operator console: its own process and port, never mounted on the ingest app
    console_port: int = CONSOLE.setting(
        "CONSOLE_PORT", Integer(1), 8090, "HTTP port of `ingester console`"
    )
    console_host: str = CONSOLE.setting(
        "CONSOLE_HOST",
        Text(),
        "127.0.0.1",
        "address `ingester console` listens on (`0.0.0.0` in a pod, for the probes and"
        " `kubectl port-forward`)",
    )
    console_token: str | None = CONSOLE.setting(
        "CONSOLE_TOKEN",
        OptionalText(),
        None,
        "the token every console request needs (bearer header or the login form)",
        secret=True,
        shown="unset = the console refuses to start",
    )

    # Telemetry: the OpenTelemetry SDK reads its standard OTEL_* variables itself; this one
    # decides whether spans are exported at all.
    otel_exporter_otlp_endpoint: str | None = TELEMETRY.setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        OptionalText(),
        None,
        "OTLP/HTTP endpoint spans are exported to (e.g. `http://collector:4318`); the SDK's"
        " other standard `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`,"
        " `OTEL_EXPORTER_OTLP_HEADERS`, ...) apply",
        shown="unset = not exported",
    )

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def require_database_url(self) -> str:
        if not self.database_url:
            raise MissingSetting("DATABASE_URL")
        return self.database_url

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise MissingSetting("KAFKA_BOOTSTRAP_SERVERS")
        return self.kafka_bootstrap_servers


SETTINGS = declared(Settings)
ENV_VARS = tuple(s.variable for s in SETTINGS)


def from_mapping(env: Mapping[str, str]) -> Settings:
    """Build settings from a mapping of environment variables (unknown keys are ignored)."""
    settings = Settings(**parse(SETTINGS, env))
    if settings.max_inflight_bytes < settings.max_body_bytes:
        # A body the budget can never hold would be answered 503 and retried forever.
        raise ConfigError("MAX_INFLIGHT_BYTES must be >= MAX_BODY_BYTES")
    return settings


def settings_table(*group_names: str) -> str:
    """The docs' settings tables of the named groups (all groups when none is named)."""
    by_name = {g.name: g for g in GROUPS}
    unknown = [n for n in group_names if n not in by_name]
    if unknown:
        raise ConfigError(f"unknown settings group {unknown[0]!r}: one of {', '.join(by_name)}")
    return markdown(SETTINGS, [by_name[n] for n in group_names] if group_names else GROUPS)


def fill_settings_tables(text: str) -> str:
    """A doc with its generated blocks (``<!-- settings: group ... -->``) refilled."""
    return fill_tables(text, lambda groups: settings_table(*groups))


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (the one ``ingester dev`` writes); ``#`` starts a comment."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


SOURCE_TREE = Path(__file__).resolve().parents[1]


def find_dev_env_file(start: Path | None = None, source_tree: Path = SOURCE_TREE) -> Path | None:
    """Where the ``.dev/stack.env`` that ``ingester dev`` wrote is, seen from ``start``
    (default: the working directory): walking up, the first folder that has one (wherever
    ``ingester dev`` ran), else the project root (``pyproject.toml`` and ``.dev``) when the
    walk reaches it; else the source tree this package is installed from (an editable
    install), if it has a ``.dev``. None when there is no such place; the file itself may
    not exist yet."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEV_ENV_FILE).is_file() or _is_project_root(folder):
            return folder / DEV_ENV_FILE
    return source_tree / DEV_ENV_FILE if _is_project_root(source_tree) else None


def _is_project_root(folder: Path) -> bool:
    return (folder / "pyproject.toml").is_file() and (folder / DEV_ENV_FILE.parent).is_dir()


def missing_hint(variable: str, env_file: Path | None) -> str:
    """How to fix a missing variable, saying where the dev values were looked for."""
    if env_file is None:
        where = "no .dev/stack.env in this folder, its parents or the source tree"
    elif env_file.is_file():
        where = f"not in {env_file} either"
    else:
        where = f"{env_file} does not exist"
    return f"{where}; run `make dev` first or set {variable}"


def load(env_file: Path | None = DEV_ENV_FILE) -> Settings:
    """Read the process environment, over the values ``ingester dev`` wrote, if any.

    Real environment variables always win; the dev file only fills gaps so that a second
    terminal can run ``ingester send-sample`` against a running ``make dev``.
    """
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update(read_env_file(env_file))
    merged.update(os.environ)
    return from_mapping(merged)
