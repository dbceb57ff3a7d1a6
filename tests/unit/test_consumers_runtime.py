"""Pure pieces of the runtime: backoff, in-batch duplicates, registry, bookkeeping names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers import store
from consumers.apply import check_sources, split_duplicates
from consumers.backoff import Backoff
from consumers.errors import PoisonError
from consumers.registry import UnknownStream, build_handlers, topics_for
from consumers.types import Event

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        pytest.param(0, 0.0, 0.25, id="first"),
        pytest.param(3, 0.0, 2.0, id="doubling"),
        pytest.param(20, 0.0, 30.0, id="capped"),
        pytest.param(1000, 0.0, 30.0, id="huge attempt"),
        pytest.param(0, 0.5, 0.225, id="jitter takes off up to a fifth"),
    ],
)
def test_backoff(attempt: int, rand: float, expected: float) -> None:
    assert Backoff().delay(attempt, rand) == pytest.approx(expected)


def ev(source: str, id_: str) -> Event:
    return Event(source=source, id=id_, type="t", time=T0, partition_key="k", data={})


def test_split_duplicates_keeps_the_first_occurrence() -> None:
    events = [ev("kit", "a"), ev("kit", "b"), ev("kit", "a"), ev("klaviyo", "a")]
    first, repeats = split_duplicates(events)
    assert [(e.source, e.id) for e in first] == [("kit", "a"), ("kit", "b"), ("klaviyo", "a")]
    assert repeats == [events[2]]


def test_an_event_without_handler_is_poison() -> None:
    with pytest.raises(PoisonError) as caught:
        check_sources([ev("kit", "a"), ev("stripe", "b")], {"kit": object()})  # type: ignore[dict-item]
    assert caught.value.event_id == "b"


def test_registry_maps_streams_to_sources() -> None:
    handlers = build_handlers(("kit", "experiments"))
    assert sorted(handlers) == ["app", "kit"]
    assert all(h.source == s for s, h in handlers.items())
    assert sorted(build_handlers(())) == ["app", "kit", "klaviyo", "revenuecat"]
    assert topics_for("p.", ["app", "kit"]) == ["p.ingest.experiments.v1", "p.ingest.kit.v1"]


def test_registry_rejects_unknown_streams() -> None:
    with pytest.raises(UnknownStream, match="stripe"):
        build_handlers(("kit", "stripe"))


@pytest.mark.parametrize(
    ("scope", "stored"),
    [pytest.param("", "kit", id="own consumers"), pytest.param("crm", "crm/kit", id="scoped")],
)
def test_scoped_sources_round_trip(scope: str, stored: str) -> None:
    assert store.stored_source("kit", scope) == stored
    assert store.original_source(stored, scope) == "kit"
