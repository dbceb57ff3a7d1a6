"""Settings are read once, validated, and never print a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import ConfigError, from_mapping, read_env_file


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
    ("raw", "expected"),
    [
        pytest.param(None, "none", id="default"),
        pytest.param("LZ4", "lz4", id="case-insensitive"),
        pytest.param(" zstd ", "zstd", id="spaces"),
        pytest.param("gzip", "gzip", id="gzip"),
    ],
)
def test_kafka_compression(raw: str | None, expected: str) -> None:
    env = {} if raw is None else {"KAFKA_COMPRESSION": raw}

    assert from_mapping(env).kafka_compression == expected
