"""The console's sessions: signed with the token, carrying a name for the audit log, refused
when tampered with or signed by another token; CSRF tokens bound to their session."""

from __future__ import annotations

import pytest

from ingester.console.auth import Sessions, clean_name
from ingester.console.charts import line_chart

TOKEN = "s3cret-token"


def test_a_session_opens_with_its_token_only() -> None:
    sessions = Sessions(TOKEN)
    cookie = sessions.issue("Ann Lee")

    opened = sessions.open(cookie)
    assert opened is not None and opened[0] == "Ann Lee"
    assert TOKEN not in cookie
    assert Sessions("another-token").open(cookie) is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"), id="signature"),
        pytest.param(lambda c: "QWRtaW4" + c[c.index(".") :], id="name"),
        pytest.param(lambda c: c.rsplit(".", 1)[0], id="no signature"),
        pytest.param(lambda c: "", id="empty"),
        pytest.param(lambda c: "a.b.c", id="garbage"),
    ],
)
def test_a_tampered_session_is_refused(tamper: object) -> None:
    sessions = Sessions(TOKEN)
    assert callable(tamper)
    assert sessions.open(tamper(sessions.issue("ann"))) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    sessions = Sessions(TOKEN)
    _, one = sessions.open(sessions.issue("ann")) or ("", "")
    _, two = sessions.open(sessions.issue("ann")) or ("", "")

    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two))
    assert not sessions.csrf_ok(one, "")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        pytest.param("  Ann  ", "Ann", id="trimmed"),
        pytest.param("", "operator", id="empty"),
        pytest.param("evil\nline", "evilline", id="no line breaks in a log line"),
        pytest.param("x" * 60, "x" * 40, id="at most 40 characters"),
    ],
)
def test_names_fit_a_log_line(raw: str, name: str) -> None:
    assert clean_name(raw) == name


def test_a_chart_breaks_its_line_where_a_sample_failed() -> None:
    from datetime import UTC, datetime, timedelta

    at = [datetime(2026, 5, 1, 12, tzinfo=UTC) + timedelta(seconds=5 * i) for i in range(5)]
    svg = line_chart(
        list(zip(at, [1.0, 4.0, None, 2.0, 3.0], strict=True)), "lag", "records", "lag"
    )

    assert svg.count('class="line"') == 2 and svg.count('class="area"') == 2
    assert 'aria-label="lag, latest 3 records"' in svg
    assert "no samples yet" in line_chart([], "lag", "records", "lag")
