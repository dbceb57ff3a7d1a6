"""What ``ingester`` writes on stderr: one line, ``ingester VERB: what went wrong``, and the
one place that turns an exception into that line and an exit code (docs/contract.md §7).

A verb prints its results on stdout itself and raises for a failure: :class:`CommandError`
when it adds words of its own, or lets one of the failures below through unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

from core.errors import CommandError
from core.settings import ConfigError, MissingSetting, missing_hint


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def say(verb: str, message: str) -> None:
    """One line on stderr from ``ingester VERB`` (a failure, or ``ingester dev``'s news)."""
    print(f"ingester {verb}: {message}", file=sys.stderr, flush=True)


def fail(verb: str, message: str, exit_code: int = 1) -> int:
    """Report a failure of ``verb`` in one line; return the exit code to leave with."""
    say(verb, one_line(message))
    return exit_code


def named(exc: BaseException) -> str:
    """``ClassName: message``, unless the message already starts with the class name."""
    name, text = type(exc).__name__, one_line(str(exc))
    return text if text.startswith(name) else f"{name}: {text}"


def _sentences() -> tuple[type[BaseException], ...]:
    """Failures whose message is already the whole sentence (it names what failed)."""
    from core.migrate import DatabaseUnreachable, MigrationError

    return (DatabaseUnreachable, MigrationError)


def expected_failures() -> tuple[type[BaseException], ...]:
    """Failures of a server or of the data that a verb reports as ``ClassName: message``,
    never as a traceback. Imported on demand: most runs never fail."""
    import asyncpg
    from aiokafka import errors as kafka_errors

    from consumers.errors import ConsumerError
    from consumers.registry import UnknownStream

    return (
        ConsumerError,
        UnknownStream,
        LookupError,
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        kafka_errors.KafkaError,
    )


def explain(exc: Exception, env_file: Path | None) -> tuple[str, int]:
    """The line (after ``ingester VERB:``) and the exit code for a verb that raised ``exc``;
    ``env_file`` is where the dev settings were looked for, named in a missing one's hint."""
    if isinstance(exc, CommandError):
        return str(exc), exc.exit_code
    if isinstance(exc, MissingSetting):
        return f"{exc} ({missing_hint(exc.variable, env_file)})", 1
    if isinstance(exc, ConfigError):
        return f"configuration error: {exc}", 1
    if isinstance(exc, _sentences()):
        return str(exc), 1
    if isinstance(exc, expected_failures()):
        return named(exc), 1
    # The last resort, so that even a failure no verb foresaw is one line, not a traceback;
    # LOG_LEVEL=DEBUG shows the libraries' side of it.
    return f"unexpected {type(exc).__name__}: {exc}", 1
