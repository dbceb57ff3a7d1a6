"""Configuration, read from the environment once into one frozen object.

Nothing else in the project reads ``os.environ``: the CLI calls :func:`load` and passes the
result down. Secrets are kept out of ``repr`` so a logged settings object never leaks them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("dev", "production")
COMPRESSIONS = ("none", "gzip", "lz4", "zstd")
DEV_ENV_FILE = Path(".dev/stack.env")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class MissingSetting(ConfigError):
    """A variable the command needs is not set."""

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is not set")
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    kafka_idempotent_producer: bool = True
    topic_prefix: str = ""
    environment: str = "dev"

    revenuecat_authorization: str | None = field(default=None, repr=False)
    revenuecat_webhook_secret: str | None = field(default=None, repr=False)
    klaviyo_webhook_secret: str | None = field(default=None, repr=False)
    klaviyo_flow_token: str | None = field(default=None, repr=False)
    kit_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    kit_legacy_token: str | None = field(default=None, repr=False)
    events_api_key: str | None = field(default=None, repr=False)

    signature_tolerance_s: int = 300
    max_body_bytes: int = 5 * 1024 * 1024
    produce_timeout_s: float = 4.0
    # On shutdown, after the in-flight requests (SHUTDOWN_DEADLINE_S): bounded so that
    # preStop + drain + flush stays inside the pod's termination grace period.
    producer_flush_timeout_s: float = 5.0
    port: int = 8000
    # Producer: record batch compression; the bytes of records handed to Kafka and not yet
    # acknowledged beyond which requests wait their turn (then 503 at PRODUCE_TIMEOUT_S); how
    # long a lone batch waits for more records before it is sent.
    kafka_compression: str = "none"
    produce_buffer_bytes: int = 32 * 1024 * 1024
    produce_linger_ms: float = 2.0

    # Ingest limits: what one process takes on at once, and how long it waits for a client
    max_inflight_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 256
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    # Topics
    topic_partitions: int = 6
    topic_replication_factor: int = 1

    # Consumers
    consumer_group: str = "ingester"
    consumer_batch_max: int = 500
    consumer_batch_wait_ms: int = 200
    pending_retry_interval_s: float = 60.0
    pending_max_age_days: float = 30.0
    pending_backoff_max_s: float = 6 * 3600.0
    pending_pass_max_rows: int = 5_000
    pending_pass_max_s: float = 10.0
    poison_max_share: float = 0.5
    shutdown_deadline_s: float = 20.0
    consumer_metrics_port: int = 9100
    # Group membership: how soon a member that died without leaving is replaced.
    consumer_session_timeout_ms: int = 10_000
    consumer_heartbeat_interval_ms: int = 3_000
    dlq_max_replays: int = 3
    inbox_retention_days: int = 30
    skipped_retention_days: int = 90
    dead_letter_retention_days: int = 90
    db_pool_max: int = 10
    # Every database and broker call is bounded (docs/consumers.md, "Timeouts").
    db_command_timeout_s: float = 10.0
    db_statement_timeout_s: float = 5.0
    db_lock_timeout_s: float = 2.0
    db_idle_in_transaction_timeout_s: float = 30.0
    db_transaction_timeout_s: float = 30.0
    kafka_io_timeout_s: float = 10.0
    liveness_stall_s: float = 120.0
    poison_window_records: int = 1000
    poison_window_s: float = 300.0
    poison_min_dead: int = 3
    consumer_apply_concurrency: int = 4

    log_level: str = "INFO"
    migrations_dir: str | None = None

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


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def _text(raw: str) -> str | None:
    return raw.strip() or None


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


# variable name -> (Settings field, parser)
_PARSERS: dict[str, tuple[str, Any]] = {
    "DATABASE_URL": ("database_url", lambda n, v: _text(v)),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", lambda n, v: _text(v)),
    "KAFKA_IDEMPOTENT_PRODUCER": ("kafka_idempotent_producer", _bool),
    "TOPIC_PREFIX": ("topic_prefix", lambda n, v: v.strip()),
    "ENVIRONMENT": ("environment", lambda n, v: v.strip()),
    "REVENUECAT_AUTHORIZATION": ("revenuecat_authorization", lambda n, v: _text(v)),
    "REVENUECAT_WEBHOOK_SECRET": ("revenuecat_webhook_secret", lambda n, v: _text(v)),
    "KLAVIYO_WEBHOOK_SECRET": ("klaviyo_webhook_secret", lambda n, v: _text(v)),
    "KLAVIYO_FLOW_TOKEN": ("klaviyo_flow_token", lambda n, v: _text(v)),
    "KIT_WEBHOOK_SECRET": (
        "kit_webhook_secrets",
        lambda n, v: tuple(s.strip() for s in v.split(",") if s.strip()),
    ),
    "KIT_LEGACY_TOKEN": ("kit_legacy_token", lambda n, v: _text(v)),
    "EVENTS_API_KEY": ("events_api_key", lambda n, v: _text(v)),
    "SIGNATURE_TOLERANCE_S": ("signature_tolerance_s", _int),
    "MAX_BODY_BYTES": ("max_body_bytes", lambda n, v: _int(n, v, 1)),
    "PRODUCE_TIMEOUT_S": ("produce_timeout_s", _float),
    "PRODUCER_FLUSH_TIMEOUT_S": ("producer_flush_timeout_s", _float),
    "PORT": ("port", lambda n, v: _int(n, v, 1)),
    "MAX_INFLIGHT_BYTES": ("max_inflight_bytes", lambda n, v: _int(n, v, 1)),
    "MAX_CONCURRENT_REQUESTS": ("max_concurrent_requests", lambda n, v: _int(n, v, 1)),
    "MAX_HEADER_BYTES": ("max_header_bytes", lambda n, v: _int(n, v, 1024)),
    "MAX_HEADERS": ("max_headers", lambda n, v: _int(n, v, 1)),
    "HEADER_TIMEOUT_S": ("header_timeout_s", _float),
    "BODY_TIMEOUT_S": ("body_timeout_s", _float),
    "KAFKA_COMPRESSION": ("kafka_compression", lambda n, v: v.strip().lower()),
    "PRODUCE_BUFFER_BYTES": ("produce_buffer_bytes", lambda n, v: _int(n, v, 1)),
    "PRODUCE_LINGER_MS": ("produce_linger_ms", _float),
    "TOPIC_PARTITIONS": ("topic_partitions", lambda n, v: _int(n, v, 1)),
    "TOPIC_REPLICATION_FACTOR": ("topic_replication_factor", lambda n, v: _int(n, v, 1)),
    "CONSUMER_GROUP": ("consumer_group", lambda n, v: v.strip()),
    "CONSUMER_BATCH_MAX": ("consumer_batch_max", lambda n, v: _int(n, v, 1)),
    "CONSUMER_BATCH_WAIT_MS": ("consumer_batch_wait_ms", _int),
    "PENDING_RETRY_INTERVAL_S": ("pending_retry_interval_s", _float),
    "PENDING_MAX_AGE_DAYS": ("pending_max_age_days", _float),
    "PENDING_BACKOFF_MAX_S": ("pending_backoff_max_s", _float),
    "PENDING_PASS_MAX_ROWS": ("pending_pass_max_rows", lambda n, v: _int(n, v, 1)),
    "PENDING_PASS_MAX_S": ("pending_pass_max_s", _float),
    "POISON_MAX_SHARE": ("poison_max_share", _float),
    "SHUTDOWN_DEADLINE_S": ("shutdown_deadline_s", _float),
    "CONSUMER_METRICS_PORT": ("consumer_metrics_port", _int),
    "CONSUMER_SESSION_TIMEOUT_MS": ("consumer_session_timeout_ms", lambda n, v: _int(n, v, 1)),
    "CONSUMER_HEARTBEAT_INTERVAL_MS": (
        "consumer_heartbeat_interval_ms",
        lambda n, v: _int(n, v, 1),
    ),
    "DLQ_MAX_REPLAYS": ("dlq_max_replays", _int),
    "INBOX_RETENTION_DAYS": ("inbox_retention_days", lambda n, v: _int(n, v, 1)),
    "SKIPPED_RETENTION_DAYS": ("skipped_retention_days", lambda n, v: _int(n, v, 1)),
    "DEAD_LETTER_RETENTION_DAYS": ("dead_letter_retention_days", lambda n, v: _int(n, v, 1)),
    "DB_POOL_MAX": ("db_pool_max", lambda n, v: _int(n, v, 1)),
    "DB_COMMAND_TIMEOUT_S": ("db_command_timeout_s", _float),
    "DB_STATEMENT_TIMEOUT_S": ("db_statement_timeout_s", _float),
    "DB_LOCK_TIMEOUT_S": ("db_lock_timeout_s", _float),
    "DB_IDLE_IN_TRANSACTION_TIMEOUT_S": ("db_idle_in_transaction_timeout_s", _float),
    "DB_TRANSACTION_TIMEOUT_S": ("db_transaction_timeout_s", _float),
    "KAFKA_IO_TIMEOUT_S": ("kafka_io_timeout_s", _float),
    "LIVENESS_STALL_S": ("liveness_stall_s", _float),
    "POISON_WINDOW_RECORDS": ("poison_window_records", lambda n, v: _int(n, v, 1)),
    "POISON_WINDOW_S": ("poison_window_s", _float),
    "POISON_MIN_DEAD": ("poison_min_dead", lambda n, v: _int(n, v, 1)),
    "CONSUMER_APPLY_CONCURRENCY": ("consumer_apply_concurrency", lambda n, v: _int(n, v, 1)),
    "LOG_LEVEL": ("log_level", lambda n, v: v.strip().upper()),
    "MIGRATIONS_DIR": ("migrations_dir", lambda n, v: _text(v)),
}

ENV_VARS = tuple(_PARSERS)


def from_mapping(env: Mapping[str, str]) -> Settings:
    """Build settings from a mapping of environment variables (unknown keys are ignored)."""
    values: dict[str, Any] = {}
    for name, (attr, parse) in _PARSERS.items():
        raw = env.get(name)
        if raw is not None:
            values[attr] = parse(name, raw)
    settings = Settings(**values)
    if settings.environment not in ENVIRONMENTS:
        raise ConfigError(f"ENVIRONMENT must be one of {', '.join(ENVIRONMENTS)}")
    if settings.kafka_compression not in COMPRESSIONS:
        raise ConfigError(f"KAFKA_COMPRESSION must be one of {', '.join(COMPRESSIONS)}")
    if not 0 < settings.poison_max_share <= 1:
        raise ConfigError("POISON_MAX_SHARE must be in (0, 1]")
    if settings.max_inflight_bytes < settings.max_body_bytes:
        # A body the budget can never hold would be answered 503 and retried forever.
        raise ConfigError("MAX_INFLIGHT_BYTES must be >= MAX_BODY_BYTES")
    if settings.header_timeout_s <= 0 or settings.body_timeout_s <= 0:
        raise ConfigError("HEADER_TIMEOUT_S and BODY_TIMEOUT_S must be > 0")
    return settings


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
