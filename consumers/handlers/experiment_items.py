"""First-party A/B testing items (docs/contract.md §4.6) decoded into typed values ready for the
database.

The ingest service validates items before publishing; this module decodes them again at the
consumer boundary with the same table (:mod:`contract.items`), because a record that would fail
a column constraint can never apply and must be dead-lettered alone instead of failing its
whole batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from consumers.decode import is_object
from consumers.errors import PoisonError
from consumers.types import Event
from contract.items import InvalidField, amount, columns_of, parse_fields

DEFAULT_CONVERSION_TYPE = "conversion"
DEFAULT_WINDOW_DAYS = 30  # conversions.conversion_window_days DEFAULT 30 (seed 002)


def money(value: Any) -> Decimal:
    """:func:`contract.items.amount`: a non-negative numeric(10, 2). Raises ValueError."""
    return amount(value)


@dataclass(frozen=True, slots=True)
class Item:
    """One impression or conversion. ``columns`` holds only the optional columns present."""

    kind: str
    id: uuid.UUID
    user_id: uuid.UUID
    experiment: str
    variant: str
    at: datetime
    conversion_type: str = DEFAULT_CONVERSION_TYPE
    window_days: int = DEFAULT_WINDOW_DAYS
    columns: Mapping[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> Any:
        return self.columns.get(name)


def _item(data: Mapping[str, Any], event: Event) -> Item:
    data = dict(data)
    if data.get("type") is None:
        data["type"] = event.type.removeprefix("app.")  # ce_type is app.<type>
    if isinstance(data.get("conversion_value"), str):
        try:
            data["conversion_value"] = money(data["conversion_value"])
        except InvalidField as exc:
            raise InvalidField(exc.message, "conversion_value") from None
    values = parse_fields(data)
    columns = columns_of(values, values["type"])
    conversion_type = columns.pop("conversion_type", DEFAULT_CONVERSION_TYPE)
    window_days = columns.pop("conversion_window_days", DEFAULT_WINDOW_DAYS)
    return Item(
        kind=values["type"],
        id=values["id"],
        user_id=values["user_id"],
        experiment=values["experiment"],
        variant=values["variant"],
        # ce_time: occurred_at as ingest normalised it, read once by the decoder.
        at=event.time,
        conversion_type=conversion_type,
        window_days=window_days,
        columns=columns,
    )


def parse_item(event: Event) -> Item:
    """Decode one ``ingest.experiments.v1`` event; raises PoisonError naming the bad field."""
    if not is_object(event.data):
        raise PoisonError("experiment event value is not a JSON object", event_id=event.id)
    try:
        return _item(event.data, event)
    except InvalidField as exc:
        where = f"field {exc.field}" if exc.field else "item"
        raise PoisonError(f"{where} {exc.message}", event_id=event.id) from None
