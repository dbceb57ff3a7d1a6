"""Personal data on the console's pages is masked unless asked for."""

from __future__ import annotations

from typing import Any

import pytest

from ingester.console.mask import mask_json, mask_text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        pytest.param("ann@example.com", "a***@***.com", id="an email"),
        pytest.param("key Ann.Lee+x@mail.example.co.uk!", "key A***@***.uk!", id="inside text"),
        pytest.param("two: a@b.io, c@d.org", "two: a***@***.io, c***@***.org", id="two"),
        pytest.param("u_rc_sample_1", "u_rc_sample_1", id="an id is kept"),
        pytest.param("not@an-email", "not@an-email", id="no top-level domain"),
    ],
)
def test_emails_in_text(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    ("data", "masked"),
    [
        pytest.param(
            {"email": "ann@example.com", "plan": "pro"},
            {"email": "a***@***.com", "plan": "pro"},
            id="an email field",
        ),
        pytest.param(
            {"profile": {"first_name": "Ann", "phone_number": "+15550100", "id": "p1"}},
            {"profile": {"first_name": "A***", "phone_number": "+***", "id": "p1"}},
            id="nested personal fields",
        ),
        pytest.param(
            {"$displayName": {"value": "Ann Lee", "updated_at_ms": 17}},
            {"$displayName": {"value": "A***", "updated_at_ms": 17}},
            id="under a personal field: texts, not numbers",
        ),
        pytest.param(
            {"note": "write to bob@example.org", "list": ["x@y.com", 3]},
            {"note": "write to b***@***.org", "list": ["x***@***.com", 3]},
            id="emails in any text",
        ),
        pytest.param({"phone": 15550100, "name": None}, {"phone": "***", "name": None}, id="n"),
    ],
)
def test_personal_fields_in_json(data: Any, masked: Any) -> None:
    assert mask_json(data) == masked
