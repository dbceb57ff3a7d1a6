"""RevenueCat's own experiments as participations (docs/experiments.md, "RevenueCat
experiments").

An enrolment is stated by an ``EXPERIMENT_ENROLLMENT`` event (``experiment_id``,
``experiment_variant``, ``offering_id`` and the enrolment time, ``experiment_enrolled_at_ms``
in RevenueCat's sample and ``enrolled_at_ms`` in its field table: both are read) and by each
entry of the ``experiments`` array of lifecycle events (``enrolled_at_ms``). Each statement is
an exposure of the customer to that variant at that time, applied like an impression: the
same statement made by several events is one impression (its id derives from the profile,
the experiment, the variant and the time), and the earliest exposure decides the variant.

The experiment is the one an operator mapped the RevenueCat experiment onto
(``ingest_revenuecat_experiment_map``), else ``revenuecat:<experiment_id>``, created on first
sight (status ``active``) with a variant per ``experiment_variant`` seen.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from consumers.handlers.experiment_plan import Experiment
from consumers.handlers.experiment_reads import load_experiments
from consumers.types import Event

ENROLLMENT_TYPE = "EXPERIMENT_ENROLLMENT"
NAME_PREFIX = "revenuecat:"
IMPRESSION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:webhook-ingester:revenuecat-enrolment")
_EARLIEST_MS, _LATEST_MS = 0, 32_503_680_000_000  # 1970 .. 3000

SELECT_MAPPED = """
SELECT m.revenuecat_experiment_id, e.name, m.variant_names::text AS variant_names
FROM ingest_revenuecat_experiment_map AS m JOIN experiments AS e ON e.id = m.experiment_id
WHERE m.revenuecat_experiment_id = ANY($1::text[])
"""

# Created on first sight, in name order (two transactions creating the same experiments
# take their unique-index entries in one order).
CREATE_EXPERIMENTS = """
INSERT INTO experiments (name, description, status, is_active)
SELECT n, 'RevenueCat experiment ' || r, 'active', true
FROM unnest($1::text[], $2::text[]) AS x(n, r) ORDER BY n
ON CONFLICT (name) DO NOTHING
"""

# A variant is created with the offering it shows; a variant first seen without one (an
# `experiments` array does not carry it) gets it from the first enrolment event that does.
CREATE_VARIANTS = """
INSERT INTO variants AS v (experiment_id, name, config_json)
SELECT e.id, x.v, CASE WHEN x.o IS NULL THEN NULL
                       ELSE jsonb_build_object('revenuecat_offering_id', x.o) END
FROM unnest($1::text[], $2::text[], $3::text[]) AS x(n, v, o)
JOIN experiments AS e ON e.name = x.n
ORDER BY e.id, x.v
ON CONFLICT (experiment_id, name) DO UPDATE
SET config_json = coalesce(v.config_json, '{}'::jsonb) || excluded.config_json
WHERE excluded.config_json IS NOT NULL AND v.config_json ->> 'revenuecat_offering_id' IS NULL
"""


@dataclass(frozen=True, slots=True)
class Enrollment:
    experiment: str  # RevenueCat's experiment_id
    variant: str  # experiment_variant
    at: datetime
    offering_id: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a RevenueCat experiment's enrolments go: an experiment and its variant names."""

    experiment: Experiment
    variant_names: Mapping[str, str]  # RevenueCat variant -> ours, for mapped experiments

    def variant_id(self, rc_variant: str) -> uuid.UUID | None:
        return self.experiment.variants.get(self.variant_names.get(rc_variant, rc_variant))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _moment(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return fallback
    if not _EARLIEST_MS <= value <= _LATEST_MS:
        return fallback
    return datetime.fromtimestamp(value / 1000.0, UTC)


def _enrollment(entry: Mapping[str, Any], at: Any, fallback: datetime) -> Enrollment | None:
    experiment = _text(entry.get("experiment_id"))
    variant = _text(entry.get("experiment_variant"))
    if experiment is None or variant is None:
        return None
    offering = _text(entry.get("offering_id"))
    return Enrollment(experiment, variant, _moment(at, fallback), offering)


def enrollments_of(event: Event) -> list[Enrollment]:
    """The enrolments an applied RevenueCat event states, without repeats; an entry without
    an experiment id or variant is ignored, one without a usable time takes the event's."""
    data = event.data
    if not isinstance(data, Mapping):
        return []
    found: list[Enrollment | None] = []
    if data.get("type") == ENROLLMENT_TYPE:
        at = data.get("experiment_enrolled_at_ms", data.get("enrolled_at_ms"))
        found.append(_enrollment(data, at, event.time))
    entries = data.get("experiments")
    if isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, Mapping):
                found.append(_enrollment(entry, entry.get("enrolled_at_ms"), event.time))
    unique: dict[tuple[str, str, datetime], Enrollment] = {}
    for enrollment in found:
        if enrollment is not None:
            key = (enrollment.experiment, enrollment.variant, enrollment.at)
            if key not in unique or unique[key].offering_id is None:
                unique[key] = enrollment
    return list(unique.values())


def impression_id(profile: uuid.UUID, enrollment: Enrollment) -> uuid.UUID:
    """The same enrolment stated by several events is one impression."""
    millis = round(enrollment.at.timestamp() * 1000)
    name = f"{profile}/{enrollment.experiment}/{enrollment.variant}/{millis}"
    return uuid.uuid5(IMPRESSION_NAMESPACE, name)


def impression_columns(enrollment: Enrollment) -> dict[str, Any]:
    metadata = {"source": "revenuecat", "revenuecat_experiment_id": enrollment.experiment}
    return {"metadata": metadata}


async def targets(conn: asyncpg.Connection, enrollments: Iterable[Enrollment]) -> dict[str, Target]:
    """The target of each RevenueCat experiment named, creating ``revenuecat:<id>`` and its
    variants for those no operator mapped."""
    every = list(enrollments)
    ids = sorted({e.experiment for e in every})
    if not ids:
        return {}
    mapped = {r["revenuecat_experiment_id"]: r for r in await conn.fetch(SELECT_MAPPED, ids)}
    own = [i for i in ids if i not in mapped]
    if own:
        await conn.execute(CREATE_EXPERIMENTS, [NAME_PREFIX + i for i in own], own)
        await _create_variants(conn, [e for e in every if e.experiment not in mapped])
    names = {i: mapped[i]["name"] if i in mapped else NAME_PREFIX + i for i in ids}
    loaded = await load_experiments(conn, names.values())
    found: dict[str, Target] = {}
    for rc_id, name in names.items():
        if name in loaded:
            renames = orjson.loads(mapped[rc_id]["variant_names"]) if rc_id in mapped else {}
            renames = {k: v for k, v in renames.items() if isinstance(v, str)}
            found[rc_id] = Target(loaded[name], renames)
    return found


async def _create_variants(conn: asyncpg.Connection, enrollments: Sequence[Enrollment]) -> None:
    offering: dict[tuple[str, str], str | None] = {}
    for e in sorted(enrollments, key=lambda e: (e.experiment, e.variant, e.offering_id or "")):
        key = (NAME_PREFIX + e.experiment, e.variant)
        if offering.get(key) is None:
            offering[key] = e.offering_id
    keys = sorted(offering)
    await conn.execute(
        CREATE_VARIANTS, [k[0] for k in keys], [k[1] for k in keys], [offering[k] for k in keys]
    )
