"""Settings are read once, validated, and never print a secret."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from core.config import shown_default
from core.settings import (
    ENV_VARS,
    GROUPS,
    SETTINGS,
    ConfigError,
    Settings,
    from_mapping,
    read_env_file,
    settings_table,
)


def test_defaults_match_the_spec() -> None:
    settings = from_mapping({})

    assert settings.kafka_idempotent_producer is True
    assert settings.topic_prefix == ""
    assert settings.environment == "dev"
    assert settings.signature_tolerance_s == 300
    assert settings.max_body_bytes == 5 * 1024 * 1024
    assert settings.produce_timeout_s == 4
    assert settings.port == 8000
    assert settings.revenuecat_authorization is None
    assert settings.pending_max_age_days == 30


def test_parked_event_and_retention_settings_are_read() -> None:
    settings = from_mapping(
        {
            "PENDING_MAX_AGE_DAYS": "7",
            "PENDING_BACKOFF_MAX_S": "600",
            "PENDING_PASS_MAX_ROWS": "100",
            "PENDING_PASS_MAX_S": "2.5",
            "SKIPPED_RETENTION_DAYS": "14",
            "DEAD_LETTER_RETENTION_DAYS": "21",
        }
    )

    assert (settings.pending_max_age_days, settings.pending_backoff_max_s) == (7, 600)
    assert (settings.pending_pass_max_rows, settings.pending_pass_max_s) == (100, 2.5)
    assert (settings.skipped_retention_days, settings.dead_letter_retention_days) == (14, 21)


def test_kit_secrets_are_a_comma_list_for_rotation() -> None:
    settings = from_mapping({"KIT_WEBHOOK_SECRET": "old, new ,"})

    assert settings.kit_webhook_secrets == ("old", "new")


def test_secrets_never_appear_in_repr() -> None:
    settings = from_mapping({"EVENTS_API_KEY": "sekret-1", "KLAVIYO_WEBHOOK_SECRET": "sekret-2"})

    assert "sekret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"PORT": "eighty"}, "PORT must be an integer", id="port not a number"),
        pytest.param({"ENVIRONMENT": "staging"}, "ENVIRONMENT", id="unknown environment"),
        pytest.param({"KAFKA_IDEMPOTENT_PRODUCER": "maybe"}, "true or false", id="not a boolean"),
        pytest.param({"MAX_BODY_BYTES": "0"}, ">= 1", id="zero body limit"),
        pytest.param({"PRODUCE_TIMEOUT_S": "-1"}, ">= 0", id="negative timeout"),
        pytest.param({"KAFKA_COMPRESSION": "snappy"}, "KAFKA_COMPRESSION", id="snappy"),
        pytest.param({"PRODUCE_BUFFER_BYTES": "0"}, ">= 1", id="zero producer buffer"),
        pytest.param({"PORT": "0"}, "PORT must be >= 1, got 0", id="integer below its minimum"),
        pytest.param({"MAX_HEADER_BYTES": "1023"}, "must be >= 1024, got 1023", id="header bytes"),
        pytest.param({"DB_LOCK_TIMEOUT_S": "-2"}, "must be >= 0, got -2.0", id="negative number"),
        pytest.param({"HEADER_TIMEOUT_S": "0"}, "HEADER_TIMEOUT_S must be > 0", id="zero head"),
        pytest.param({"BODY_TIMEOUT_S": "0"}, "BODY_TIMEOUT_S must be > 0", id="zero body"),
        pytest.param({"POISON_MAX_SHARE": "0"}, r"must be in \(0, 1\]", id="share of 0"),
        pytest.param({"POISON_MAX_SHARE": "1.5"}, r"must be in \(0, 1\]", id="share over 1"),
        pytest.param(
            {"ENVIRONMENT": "Production"},
            "^ENVIRONMENT must be one of dev, production$",
            id="environment is case-sensitive",
        ),
        pytest.param(
            {"KAFKA_COMPRESSION": "brotli"},
            "^KAFKA_COMPRESSION must be one of none, gzip, lz4, zstd$",
            id="unknown codec",
        ),
        pytest.param(
            {"MAX_INFLIGHT_BYTES": "1024"},
            "^MAX_INFLIGHT_BYTES must be >= MAX_BODY_BYTES$",
            id="budget below the default body",
        ),
    ],
)
def test_malformed_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping(env)


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    path.write_text("# comment\nDATABASE_URL=postgresql://x@127.0.0.1:1/db\nexport PORT='9000'\n\n")

    assert read_env_file(path) == {
        "DATABASE_URL": "postgresql://x@127.0.0.1:1/db",
        "PORT": "9000",
    }


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        pytest.param({"POISON_MAX_SHARE": "1"}, "poison_max_share", 1.0, id="share of 1"),
        pytest.param({"LIVENESS_STALL_S": "0"}, "liveness_stall_s", 0.0, id="zero turns off"),
        pytest.param({"ENVIRONMENT": " production "}, "environment", "production", id="blanks"),
        pytest.param({"LOG_LEVEL": " debug"}, "log_level", "DEBUG", id="log level upper"),
        pytest.param({"DATABASE_URL": "  "}, "database_url", None, id="blank is unset"),
        pytest.param(
            {"KAFKA_IDEMPOTENT_PRODUCER": "off"}, "kafka_idempotent_producer", False, id="flag"
        ),
        pytest.param({"CONSUMER_BATCH_WAIT_MS": " 0 "}, "consumer_batch_wait_ms", 0, id="int"),
        pytest.param({"UNKNOWN_VARIABLE": "x"}, "port", 8000, id="unknown keys ignored"),
        pytest.param({}, "kafka_compression", "none", id="compression default"),
        pytest.param({"KAFKA_COMPRESSION": "LZ4"}, "kafka_compression", "lz4", id="codec case"),
        pytest.param(
            {"KAFKA_COMPRESSION": " zstd "}, "kafka_compression", "zstd", id="codec blanks"
        ),
        pytest.param({"KAFKA_COMPRESSION": "gzip"}, "kafka_compression", "gzip", id="gzip"),
    ],
)
def test_values_are_parsed(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(from_mapping(env), field) == expected


def test_each_field_is_declared_once_with_its_own_variable() -> None:
    variables = [s.variable for s in SETTINGS]

    assert [s.attribute for s in SETTINGS] == [f.name for f in fields(Settings)]
    assert len(set(variables)) == len(variables) == len(ENV_VARS)
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", v) for v in variables)
    assert all(s.doc and s.group in {g.name for g in GROUPS} for s in SETTINGS)


def test_secrets_are_the_fields_kept_out_of_repr() -> None:
    secret = {s.attribute for s in SETTINGS if s.secret}

    assert secret == {f.name for f in fields(Settings) if not f.repr}
    assert "kit_webhook_secrets" in secret
    assert "database_url" not in secret


@pytest.mark.parametrize(
    ("variable", "shown"),
    [
        pytest.param("MAX_BODY_BYTES", "5242880 (5 MiB)", id="MiB"),
        pytest.param("MAX_HEADER_BYTES", "16384", id="bytes"),
        pytest.param("PRODUCE_TIMEOUT_S", "4", id="whole float"),
        pytest.param("POISON_MAX_SHARE", "0.5", id="fraction"),
        pytest.param("TOPIC_PREFIX", "empty", id="empty text"),
        pytest.param("CONSUMER_GROUP", "`ingester`", id="text"),
        pytest.param("EVENTS_API_KEY", "unset = 404", id="told"),
    ],
)
def test_defaults_as_the_docs_show_them(variable: str, shown: str) -> None:
    (setting,) = (s for s in SETTINGS if s.variable == variable)

    assert shown_default(setting) == shown


def test_a_table_row_per_variable_of_the_group() -> None:
    table = settings_table("kafka")

    assert table.startswith("**Kafka producers and topics**\n\n| variable | meaning | default |")
    assert "| `KAFKA_COMPRESSION` | " in table
    assert "one of `none`, `gzip`, `lz4`, `zstd` | `none` |" in table
    assert "DATABASE_URL" not in table
    assert settings_table() == settings_table(*(g.name for g in GROUPS))


def test_an_unknown_group_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown settings group 'nope'"):
        settings_table("nope")


def test_the_command_prints_and_refills_the_tables(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n\n<!-- settings: retention -->\nstale\n<!-- /settings -->\nend\n")
    command = [sys.executable, "-m", "ingester.settings_tables"]

    printed = subprocess.run(
        [*command, "--markdown", "retention"], capture_output=True, text=True, check=True
    )
    subprocess.run([*command, "--write", str(doc)], capture_output=True, check=True)

    assert printed.stdout == settings_table("retention") + "\n"
    assert doc.read_text() == (
        "intro\n\n<!-- settings: retention -->\n\n"
        + settings_table("retention")
        + "\n\n<!-- /settings -->\nend\n"
    )
