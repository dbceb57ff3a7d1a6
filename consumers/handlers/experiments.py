"""First-party impressions and conversions (``ingest.experiments.v1``) -> seed 002 tables.

Per batch: decode every item, read the experiments and variants named, the users and the ids
already stored, lock the participations involved, replay the events in order through
:class:`~consumers.handlers.experiment_plan.Plan`, then write the produced rows. A fixed
number of statements per batch, whatever its size.

Outcomes per event:
- unknown experiment, variant or user, a conversion without a participation, or one dated
  before the first exposure: pending (a later event or a newly created row can make it apply);
- an experiment that is inactive, ended, or not started at the event's time: skipped;
- an id already stored (impressions and conversions keep the event id): applied, no effect;
- otherwise applied.

A participation the batch creates, moves to an earlier first exposure or to another variant
converts the RevenueCat purchases of the ledger made since (:mod:`consumers.handlers.ledger`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from consumers.handlers import buyers, ledger, refunds
from consumers.handlers.experiment_items import Item, parse_item
from consumers.handlers.experiment_plan import Conversion, Experiment, Plan
from consumers.handlers.experiment_reads import (
    load_experiments,
    load_known,
    lock_participation_keys,
    lock_participations,
)
from consumers.handlers.experiment_store import write
from consumers.pending import waits
from consumers.types import APPLIED, Context, Event, Result, pending
from contract.topics import SOURCE_APP


class ExperimentsHandler:
    """The :class:`~consumers.types.Handler` of the ``app`` source."""

    source = SOURCE_APP

    async def apply(
        self, conn: asyncpg.Connection, events: Sequence[Event], ctx: Context
    ) -> list[Result]:
        items = [parse_item(event) for event in events]
        if not items:
            return []
        experiments = await load_experiments(conn, (item.experiment for item in items))
        known = await load_known(
            conn,
            (item.user_id for item in items),
            (item.id for item in items if item.kind == "impression"),
            (item.id for item in items if item.kind == "conversion"),
        )
        keys = [
            (item.user_id, experiments[item.experiment].id)
            for item in items
            if item.experiment in experiments
        ]
        # The people first, as every transaction touching participations and the purchase
        # ledger does (consumers.handlers.buyers); then the keys, before reading them: two
        # transactions creating the same first participation would otherwise both plan it
        # (two first exposures, or an impression counted under the other's variant).
        await buyers.lock_profiles(conn, (user for user, _ in keys))
        await lock_participation_keys(conn, keys)
        plan = Plan(await lock_participations(conn, keys))
        planner = _Planner(plan, experiments, known)
        results = [planner.plan(item) for item in items]
        # Participations created or exposed earlier convert the purchases made since.
        exposed = plan.exposed_earlier()
        converted = []
        if exposed:
            by_id = {e.id: e for e in experiments.values()}
            candidates = await ledger.ledger_candidates(conn, exposed)
            converted = await ledger.convert(conn, plan, by_id, candidates)
        await write(conn, plan)
        await refunds.sync(conn, (m.transaction_id for m in converted))
        return results


class _Planner:
    def __init__(
        self,
        plan: Plan,
        experiments: Mapping[str, Experiment],
        known: Mapping[str, set[uuid.UUID]],
    ) -> None:
        self._plan = plan
        self._experiments = experiments
        self._users = known["user"]
        self._stored = {"impression": known["impression"], "conversion": known["conversion"]}

    def plan(self, item: Item) -> Result:
        if item.id in self._stored[item.kind]:
            return APPLIED  # already recorded by an earlier delivery: nothing to change
        experiment = self._experiments.get(item.experiment)
        if experiment is None:
            return pending("unknown experiment", waits.key(waits.EXPERIMENT, item.experiment))
        refusal = experiment.refusal(item.at)
        if refusal is not None:
            return refusal
        variant_id = experiment.variants.get(item.variant)
        if variant_id is None:
            return pending("unknown variant", waits.key(waits.EXPERIMENT, item.experiment))
        if item.user_id not in self._users:
            return pending("unknown user", waits.key(waits.PROFILE_ID, item.user_id))
        key = (item.user_id, experiment.id)
        if item.kind == "impression":
            result = self._plan.impression(item.id, key, variant_id, item.at, item.columns)
        else:
            result = self._plan.conversion(self._conversion(item, key, variant_id))
        if result is APPLIED:
            self._stored[item.kind].add(item.id)
        return result

    def _conversion(
        self, item: Item, key: tuple[uuid.UUID, uuid.UUID], variant_id: uuid.UUID
    ) -> Conversion:
        columns = dict(item.columns)
        value = columns.pop("conversion_value", None)
        part = self._plan.participation(key)
        if part is not None and part.variant_id != variant_id:
            # Attributed to the variant of first exposure; keep what the client reported.
            columns["conversion_context"] = _with(
                columns.get("conversion_context"), reported_variant=item.variant
            )
        return Conversion(
            id=item.id,
            user_id=item.user_id,
            experiment_id=key[1],
            at=item.at,
            conversion_type=item.conversion_type,
            window_days=item.window_days,
            value=value,
            columns=columns,
        )


def _with(context: Any, **extra: Any) -> Any:
    if context is None:
        return extra
    if isinstance(context, Mapping):
        return {**context, **extra}
    return {"value": context, **extra}
