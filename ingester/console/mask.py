"""Personal data masked for the console's pages unless asked for (``?pii=1``, audited).

Emails anywhere in a text keep their first letter and top-level domain
(``a***@***.com``); the values of fields that name a person (emails, phone numbers, names,
addresses, IP addresses) keep their first character only. A user key typed into the lookup
is masked the same way when it is an email. Pure functions, applied to what a page shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+([A-Za-z]{2,})\b")
MASK = "***"
# Field names (lower-cased, without '$' and '_') whose values are personal data.
PERSONAL = frozenset(
    {
        "email",
        "emailaddress",
        "phone",
        "phonenumber",
        "firstname",
        "lastname",
        "name",
        "displayname",
        "fullname",
        "address",
        "address1",
        "address2",
        "street",
        "ip",
        "ipaddress",
        "birthday",
        "dateofbirth",
    }
)


def mask_text(text: str) -> str:
    """``text`` with every email in it masked."""
    return EMAIL.sub(lambda m: f"{m[1]}{MASK}@{MASK}.{m[2]}", text)


def _personal(key: str) -> bool:
    return key.lower().replace("$", "").replace("_", "").replace("-", "") in PERSONAL


def mask_value(value: Any) -> Any:
    """A personal field's value: its first character and the mask (emails as emails)."""
    if isinstance(value, str):
        if "@" in value:
            return mask_text(value)
        return f"{value[:1]}{MASK}" if value else value
    return value if value is None or isinstance(value, bool) else MASK


def mask_json(data: Any, personal: bool = False) -> Any:
    """A copy of decoded JSON with emails and personal fields masked at any depth; under a
    personal field (RevenueCat's ``{"$email": {"value": ..., "updated_at_ms": ...}}``)
    every text is masked, numbers and flags are kept."""
    if isinstance(data, Mapping):
        return {key: _field(str(key), value, personal) for key, value in data.items()}
    if isinstance(data, list):
        return [mask_json(item, personal) for item in data]
    if isinstance(data, str):
        return mask_value(data) if personal else mask_text(data)
    return data


def _field(key: str, value: Any, personal: bool) -> Any:
    named = _personal(key)
    if named and not isinstance(value, Mapping | list):
        return mask_value(value)
    return mask_json(value, personal or named)
