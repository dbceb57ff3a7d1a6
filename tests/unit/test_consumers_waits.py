"""The keys parked events wait for, as the handlers build them. The triggers of
sql/0004_parked_events.sql build the same strings; the integration tests check both ends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from consumers.handlers.experiment_plan import Conversion, Plan
from consumers.pending import waits
from consumers.types import Outcome

USER = uuid.UUID("00000000-0000-0000-0000-000000000001")
EXP = uuid.UUID("00000000-0000-0000-0000-000000000002")


@pytest.mark.parametrize(
    ("kind", "value", "key"),
    [
        pytest.param(waits.REVENUECAT_ID, "Ab_1", "revenuecat_id:Ab_1", id="ids keep their case"),
        # An email's value is already the database's match key (sql/0007): kept as given.
        pytest.param(waits.PROFILE_EMAIL, "ann@x.com", "profile_email:ann@x.com", id="email"),
        pytest.param(waits.USER_EMAIL, "σοφια@x.gr", "user_email:σοφια@x.gr", id="user email"),
        pytest.param(waits.USER_UID, "U_1", "user_uid:U_1", id="uid"),
        pytest.param(waits.KLAVIYO_ID, "01HX", "klaviyo_id:01HX", id="klaviyo profile"),
        pytest.param(waits.EXPERIMENT, "Checkout", "experiment:Checkout", id="experiment"),
        pytest.param(waits.PROFILE_ID, USER, f"profile_id:{USER}", id="profile id"),
    ],
)
def test_key(kind: str, value: str | uuid.UUID, key: str) -> None:
    assert waits.key(kind, value) == key


def test_a_conversion_without_participation_waits_for_it() -> None:
    result = Plan([]).conversion(
        Conversion(uuid.uuid4(), USER, EXP, datetime.now(UTC), "x", 30, None, {})
    )
    assert result.outcome is Outcome.PENDING
    assert result.waits_for == (f"participation:{USER}/{EXP}",)
