"""Batch writes of the experiment tables (seed 002): everything a plan produced.

One ``INSERT ... SELECT FROM unnest`` of parallel arrays per table, so a batch costs a fixed
number of statements however many events it holds, and PostgreSQL plans and runs each once.
Values travel as plain text/uuid/number parameters and are cast in SQL (jsonb from text,
enums from text), so the statements do not depend on codecs registered on the connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from consumers.handlers import experiment_moves as moves
from consumers.handlers.experiment_plan import (
    FIRST_EXPOSURE,
    ConversionRow,
    ImpressionRow,
    Participation,
    Plan,
)
from contract import items

_IMPRESSION_FIXED = (
    ("id", "uuid"),
    ("user_id", "uuid"),
    ("experiment_id", "uuid"),
    ("variant_id", "uuid"),
    ("impression_at", "timestamptz"),
    ("is_first_exposure", "bool"),
    ("user_was_eligible", "bool"),
)
_CONVERSION_FIXED = (
    ("id", "uuid"),
    ("user_id", "uuid"),
    ("experiment_id", "uuid"),
    ("variant_id", "uuid"),
    ("created_at", "timestamptz"),
    ("conversion_type", "text"),
    ("conversion_value", "numeric"),
    ("conversion_window_days", "int4"),
    ("time_to_convert", "int4"),
    ("is_first_conversion_for_experiment", "bool"),
    ("original_exposure_date", "timestamptz"),
    ("conversion_eligibility_verified", "bool"),
)

# Item fields the handler consumes itself instead of storing them as given.
_NOT_COLUMNS = frozenset({"user_was_eligible"})


def _optional_columns(
    kind: str, fixed: Sequence[tuple[str, str]]
) -> Mapping[str, tuple[str, str | None]]:
    """Optional column -> (SQL cast of its parameter, default when absent), from the item
    schema (:data:`contract.items.OPTIONAL`): every field the table of ``kind`` stores that is
    not one of its fixed columns."""
    taken = {name for name, _ in fixed} | _NOT_COLUMNS
    return {
        name: (f.sql, f.default)
        for name, f in items.OPTIONAL.items()
        if kind in f.kinds and name not in taken
    }


_IMPRESSION_OPTIONAL = _optional_columns(items.IMPRESSION, _IMPRESSION_FIXED)
_CONVERSION_OPTIONAL = _optional_columns(items.CONVERSION, _CONVERSION_FIXED)


def _array_cast(cast: str) -> tuple[str, str]:
    """(array type of the parameter, cast applied to each element in SQL) of a column cast:
    ``text::jsonb`` travels as ``text[]`` and each element is cast to jsonb."""
    base, _, element = cast.partition("::")
    return f"{base}[]", f"::{element}" if element else ""


def _insert(table: str, fixed: Sequence[tuple[str, str]], optional: Mapping[str, Any]) -> str:
    """One ``INSERT ... SELECT FROM unnest(...)`` for every row of a batch: one parallel array
    per column, so PostgreSQL plans and executes one statement whatever the batch size."""
    names = [name for name, _ in fixed] + list(optional)
    casts = [cast for _, cast in fixed] + [cast for cast, _ in optional.values()]
    defaults = [None] * len(fixed) + [default for _, default in optional.values()]
    arrays, values = [], []
    for i, (cast, default) in enumerate(zip(casts, defaults, strict=True), 1):
        array, element = _array_cast(cast)
        arrays.append(f"${i}::{array}")
        value = f"c{i}{element}"
        values.append(f"coalesce({value}, {default})" if default else value)
    aliases = ", ".join(f"c{i}" for i in range(1, len(names) + 1))
    # Built once at import from constant column tables, never from input.
    return (
        f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM unnest({', '.join(arrays)}) AS x({aliases}) "
        "ON CONFLICT (id) DO NOTHING"
    )


INSERT_IMPRESSIONS = _insert("impressions", _IMPRESSION_FIXED, _IMPRESSION_OPTIONAL)
INSERT_CONVERSIONS = _insert("conversions", _CONVERSION_FIXED, _CONVERSION_OPTIONAL)

INSERT_ATTRIBUTIONS = """
INSERT INTO conversion_attribution (user_id, conversion_id, experiment_id, variant_id,
    attribution_method, time_to_conversion_hours, conversion_value_attributed)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::int4[],
    $7::numeric[])
ON CONFLICT (conversion_id) DO NOTHING
"""

# A merge, not an overwrite: see the module docstring of experiment_plan. The plan holds
# each key once (Plan.touched), so no row is proposed twice to ON CONFLICT DO UPDATE.
UPSERT_PARTICIPATIONS = """
INSERT INTO user_experiment_participation AS p (user_id, experiment_id, variant_id,
    first_exposure_date, total_impressions, has_converted, first_conversion_date,
    conversion_within_window)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::int4[],
    $6::bool[], $7::timestamptz[], $8::bool[])
ON CONFLICT (user_id, experiment_id) DO UPDATE SET
    -- The earliest exposure decides the variant (ties: the smaller variant id), as in the plan.
    variant_id = CASE
        WHEN (excluded.first_exposure_date, excluded.variant_id)
             < (p.first_exposure_date, p.variant_id)
        THEN excluded.variant_id ELSE p.variant_id END,
    first_exposure_date = least(p.first_exposure_date, excluded.first_exposure_date),
    total_impressions = coalesce(p.total_impressions, 0) + excluded.total_impressions,
    has_converted = coalesce(p.has_converted, false) OR excluded.has_converted,
    first_conversion_date = least(p.first_conversion_date, excluded.first_conversion_date),
    conversion_within_window = coalesce(p.conversion_within_window, false)
        OR excluded.conversion_within_window,
    updated_at = now()
"""


def _param(value: Any, cast: str) -> Any:
    if value is None:
        return None
    if cast == "text::jsonb":
        return orjson.dumps(value).decode()
    return value


def _optional(columns: Mapping[str, Any], spec: Mapping[str, tuple[str, str | None]]) -> list[Any]:
    return [_param(columns.get(name), cast) for name, (cast, _) in spec.items()]


def _optional_arrays(
    columns: Sequence[Mapping[str, Any]], spec: Mapping[str, tuple[str, str | None]]
) -> list[list[Any]]:
    """One array per optional column of ``spec``, from each row's present columns."""
    arrays = []
    for name, (cast, _) in spec.items():
        values = [c.get(name) for c in columns]
        if cast == "text::jsonb":
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
        arrays.append(values)
    return arrays


def impression_arrays(rows: Sequence[ImpressionRow]) -> list[list[Any]]:
    """The parameters of INSERT_IMPRESSIONS: one array per column, built column by column
    (a comprehension per column costs less than a tuple per row transposed)."""
    return [
        [r.id for r in rows],
        [r.user_id for r in rows],
        [r.experiment_id for r in rows],
        [r.variant_id for r in rows],
        [r.at for r in rows],
        [r.is_first_exposure for r in rows],
        [r.user_was_eligible for r in rows],
        *_optional_arrays([r.columns for r in rows], _IMPRESSION_OPTIONAL),
    ]


def conversion_args(row: ConversionRow) -> tuple[Any, ...]:
    c = row.conversion
    fixed = (
        c.id,
        c.user_id,
        c.experiment_id,
        row.variant_id,
        c.at,
        c.conversion_type,
        c.value,
        c.window_days,
        row.time_to_convert,
        row.is_first_conversion,
        row.original_exposure_date,
        True,  # eligibility verified: a participation exposed before the conversion exists
    )
    return (*fixed, *_optional(c.columns, _CONVERSION_OPTIONAL))


def attribution_args(row: ConversionRow) -> tuple[Any, ...]:
    c = row.conversion
    return (
        c.user_id,
        c.id,
        c.experiment_id,
        row.variant_id,
        FIRST_EXPOSURE,
        row.time_to_conversion_hours,
        c.value,
    )


def participation_args(part: Participation) -> tuple[Any, ...]:
    return (
        part.user_id,
        part.experiment_id,
        part.variant_id,
        part.first_exposure_date,
        part.added_impressions,
        part.has_converted,
        part.first_conversion_date,
        part.conversion_within_window,
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Parallel arrays (one list per column) of the given rows, for ``unnest``."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


async def write(conn: asyncpg.Connection, plan: Plan) -> None:
    """Write everything a plan produced, one statement per table."""
    if plan.impressions:
        await conn.execute(INSERT_IMPRESSIONS, *impression_arrays(plan.impressions))
    if plan.conversions:
        rows = [conversion_args(r) for r in plan.conversions]
        await conn.execute(INSERT_CONVERSIONS, *_columns(rows, len(rows[0])))
        rows = [attribution_args(r) for r in plan.conversions]
        await conn.execute(INSERT_ATTRIBUTIONS, *_columns(rows, len(rows[0])))
    touched = plan.touched()
    if touched:
        rows = [participation_args(p) for p in touched]
        await conn.execute(UPSERT_PARTICIPATIONS, *_columns(rows, len(rows[0])))
    await moves.write(conn, plan)
