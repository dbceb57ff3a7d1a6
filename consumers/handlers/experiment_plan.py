"""How impressions and conversions change experiment participations: the pure core.

A :class:`Plan` starts from the participations stored for the users and experiments of one
consumer batch (read under ``FOR UPDATE``) and replays the batch's events in order, so the
first impression of a user creates the participation and the second one in the same batch
increments it. It only produces rows; :mod:`consumers.handlers.experiment_store` writes them.

Participations are written as merges (see ``UPSERT_PARTICIPATIONS``): impressions are added
as a count, dates move only earlier, flags only turn on. Applying an older event after a
newer one therefore never loses what the newer one recorded.

The earliest exposure decides (by event time, then variant id for an exact tie): an impression
earlier than the stored first exposure moves it back, and when it is of another variant the
participation switches to that variant (``variant_switched``); the store then marks the other
variant's impressions ineligible, recounts ``total_impressions`` and moves the conversions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from consumers.pending import waits
from consumers.types import APPLIED, Result, pending, skipped

Key = tuple[uuid.UUID, uuid.UUID]  # (user_profiles.id, experiments.id)

ENDED_STATUSES = frozenset({"completed", "archived"})
SECONDS_PER_DAY = 86_400
FIRST_EXPOSURE = "first_exposure"
# user_eligibility_status.reason of an impression of a variant the user is not assigned to.
INELIGIBLE_REASON = "assigned_to_other_variant"


@dataclass(frozen=True, slots=True)
class Experiment:
    id: uuid.UUID
    name: str
    is_active: bool
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    variants: Mapping[str, uuid.UUID] = field(default_factory=dict)

    def refusal(self, at: datetime) -> Result | None:
        """Why an event at ``at`` must not count for this experiment, or None if it counts.

        The event's time against ``started_at`` / ``ended_at`` decides, not the status the
        experiment has today: an experiment completed since still counts the events that
        happened while it ran (late deliveries, parked events retried). Status and
        ``is_active`` decide only when no end time says when it stopped.
        """
        if self.started_at is not None and at < self.started_at:
            return skipped("experiment not started")
        if self.ended_at is not None:
            return skipped("experiment ended") if self.ended_at <= at else None
        if self.status in ENDED_STATUSES:
            return skipped("experiment ended")
        if not self.is_active:
            return skipped("experiment inactive")
        return None


@dataclass(frozen=True, slots=True)
class Participation:
    user_id: uuid.UUID
    experiment_id: uuid.UUID
    variant_id: uuid.UUID
    first_exposure_date: datetime
    has_converted: bool = False
    first_conversion_date: datetime | None = None
    conversion_within_window: bool = False
    added_impressions: int = 0  # impressions this batch adds to total_impressions

    @property
    def key(self) -> Key:
        return (self.user_id, self.experiment_id)


@dataclass(frozen=True, slots=True)
class ImpressionRow:
    id: uuid.UUID
    user_id: uuid.UUID
    experiment_id: uuid.UUID
    variant_id: uuid.UUID
    at: datetime
    is_first_exposure: bool
    user_was_eligible: bool
    columns: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Conversion:
    """A conversion to record: from a first-party event or from a purchase."""

    id: uuid.UUID
    user_id: uuid.UUID
    experiment_id: uuid.UUID
    at: datetime
    conversion_type: str
    window_days: int
    value: Decimal | None
    columns: Mapping[str, Any]  # optional columns of ``conversions`` (not conversion_value)


@dataclass(frozen=True, slots=True)
class ConversionRow:
    conversion: Conversion
    variant_id: uuid.UUID
    original_exposure_date: datetime
    time_to_convert: int  # seconds since the first exposure
    is_first_conversion: bool
    within_window: bool

    @property
    def time_to_conversion_hours(self) -> int:
        return self.time_to_convert // 3600


class Plan:
    """Participation state of one consumer batch, replayed event by event: what the batch
    plans to write."""

    def __init__(self, stored: Iterable[Participation]) -> None:
        self._state: dict[Key, Participation] = {p.key: p for p in stored}
        self._touched: dict[Key, None] = {}
        self.impressions: list[ImpressionRow] = []
        self.conversions: list[ConversionRow] = []
        # Keys whose earliest impression / conversion changed to an id of this batch, so the
        # flag of the one it displaced must be cleared.
        self.first_impression_moved: dict[Key, uuid.UUID] = {}
        self.first_conversion_moved: dict[Key, uuid.UUID] = {}
        # Keys whose participation moved to another variant: an earlier exposure of it came.
        self.variant_switched: dict[Key, uuid.UUID] = {}
        self._exposed: dict[Key, tuple[datetime, uuid.UUID]] = {
            key: (p.first_exposure_date, p.variant_id) for key, p in self._state.items()
        }

    def participation(self, key: Key) -> Participation | None:
        return self._state.get(key)

    def participation_keys(self) -> list[Key]:
        """Every participation the plan holds (stored or planned), in key order."""
        return sorted(self._state)

    def exposed_earlier(self) -> list[Key]:
        """Keys whose participation this batch created, moved to an earlier first exposure or
        to another variant, in key order: purchases made since that exposure may now count."""
        found = []
        for key in sorted(self._touched):
            part = self._state[key]
            before = self._exposed.get(key)
            if before is None or (part.first_exposure_date, part.variant_id) != before:
                found.append(key)
        return found

    def touched(self) -> list[Participation]:
        """Participations this batch changed, in key order (the order rows are locked in)."""
        return [self._state[key] for key in sorted(self._touched)]

    def _store(self, part: Participation) -> None:
        self._state[part.key] = part
        self._touched[part.key] = None

    def impression(
        self,
        impression_id: uuid.UUID,
        key: Key,
        variant_id: uuid.UUID,
        at: datetime,
        columns: Mapping[str, Any],
    ) -> Result:
        user_id, experiment_id = key
        part = self._state.get(key)
        first = False
        eligible = True
        if columns.get("user_was_eligible") is False:
            eligible = False  # the client excluded this exposure: stored, never counted
        elif part is None:
            first = True
            self._store(Participation(user_id, experiment_id, variant_id, at, added_impressions=1))
        elif part.variant_id != variant_id and (part.first_exposure_date, part.variant_id) < (
            at,
            variant_id,
        ):
            # A user stays in the variant of their first exposure; the stray impression is
            # kept for analysis but marked ineligible and does not count.
            eligible = False
            columns = {
                **columns,
                "user_eligibility_status": _ineligible(columns, variant_id=part.variant_id),
            }
        elif part.variant_id != variant_id:
            # An earlier exposure to another variant: it decides. The store marks the
            # impressions of the variant left ineligible and moves the conversions.
            first = True
            self._store(
                Participation(
                    user_id,
                    experiment_id,
                    variant_id,
                    at,
                    part.has_converted,
                    part.first_conversion_date,
                    part.conversion_within_window,
                    part.added_impressions + 1,
                )
            )
            self.first_impression_moved[key] = impression_id
            self.variant_switched[key] = variant_id
        else:
            first = at < part.first_exposure_date
            # Built field by field: dataclasses.replace costs several times more, once per
            # impression of a stored participation.
            self._store(
                Participation(
                    user_id,
                    experiment_id,
                    part.variant_id,
                    at if first else part.first_exposure_date,
                    part.has_converted,
                    part.first_conversion_date,
                    part.conversion_within_window,
                    part.added_impressions + 1,
                )
            )
            if first:
                self.first_impression_moved[key] = impression_id
        self.impressions.append(
            ImpressionRow(
                impression_id, user_id, experiment_id, variant_id, at, first, eligible, columns
            )
        )
        return APPLIED

    def conversion(self, conversion: Conversion) -> Result:
        key = (conversion.user_id, conversion.experiment_id)
        part = self._state.get(key)
        if part is None:
            return pending("no participation", waits.participation(*key))
        if conversion.at < part.first_exposure_date:
            # An earlier impression may still arrive; until then nothing to attribute it to.
            return pending("conversion before first exposure", waits.participation(*key))
        seconds = int((conversion.at - part.first_exposure_date).total_seconds())
        within = seconds <= conversion.window_days * SECONDS_PER_DAY
        previous = part.first_conversion_date
        first = previous is None or conversion.at < previous
        if first and previous is not None:
            self.first_conversion_moved[key] = conversion.id
        self._store(
            replace(
                part,
                has_converted=True,
                first_conversion_date=conversion.at if first else previous,
                conversion_within_window=part.conversion_within_window or within,
            )
        )
        self.conversions.append(
            ConversionRow(
                conversion, part.variant_id, part.first_exposure_date, seconds, first, within
            )
        )
        return APPLIED


def _ineligible(columns: Mapping[str, Any], *, variant_id: uuid.UUID) -> Any:
    status = columns.get("user_eligibility_status")
    note = {"reason": INELIGIBLE_REASON, "assigned_variant_id": str(variant_id)}
    if isinstance(status, Mapping):
        return {**status, **note}
    return note
