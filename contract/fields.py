"""Reading decoded event values without tripping over missing or mistyped levels."""

from __future__ import annotations

from typing import Any


def dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...`` or None when any step is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
