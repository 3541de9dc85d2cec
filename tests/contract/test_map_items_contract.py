"""The storage contract's map items (``MapItems``), run against every backend.

Each item of a map step is a record of its own, keyed by (instance, step, index): recording one
replaces that record only, the results come back in item order whatever order they were
written in, and the records go with their instance.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from hephaestus_django import InstanceNotFound, SerializationError
from hephaestus_django.runtime.contract import MapItems, MapItemState, Storage
from tests.support.instances import stored

STEP = "tests.support.maps.ChargeLines"


def items_of(storage: Storage) -> MapItems:
    assert isinstance(storage, MapItems)
    return storage


def test_an_instance_with_no_items_recorded_has_no_progress_and_no_results(
    storage: Storage,
) -> None:
    instance = stored(storage)
    assert items_of(storage).map_progress(instance.id, STEP) == {}
    assert items_of(storage).map_results(instance.id, STEP) == []
    assert items_of(storage).map_progress("not an id", STEP) == {}


def test_results_come_back_in_item_order_whatever_order_they_were_written_in(
    storage: Storage,
) -> None:
    instance = stored(storage)
    items = items_of(storage)
    for index in (2, 0, 1):
        items.record_map_item(instance.id, STEP, index, attempts=0, done=True, result=[index])
    assert items.map_results(instance.id, STEP) == [[0], [1], [2]]
    assert items.map_progress(instance.id, STEP) == {
        index: MapItemState(done=True, attempts=0) for index in range(3)
    }


def test_a_failed_attempt_is_recorded_then_replaced_by_the_result(storage: Storage) -> None:
    instance = stored(storage)
    items = items_of(storage)
    items.record_map_item(instance.id, STEP, 0, attempts=1, done=False)
    items.record_map_item(instance.id, STEP, 1, attempts=0, done=True, result=None)
    assert items.map_progress(instance.id, STEP) == {
        0: MapItemState(done=False, attempts=1),
        1: MapItemState(done=True, attempts=0),
    }
    assert items.map_results(instance.id, STEP) == [None]  # only the done ones
    items.record_map_item(instance.id, STEP, 0, attempts=1, done=True, result={"a": 1})
    assert items.map_results(instance.id, STEP) == [{"a": 1}, None]


def test_results_round_trip_through_the_codec(storage: Storage) -> None:
    instance = stored(storage)
    value = {"at": datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "amount": Decimal("1.50"), "t": (1, 2)}
    items_of(storage).record_map_item(instance.id, STEP, 0, attempts=0, done=True, result=value)
    [back] = items_of(storage).map_results(instance.id, STEP)
    assert back == value
    assert type(back["amount"]) is Decimal
    assert type(back["t"]) is tuple


def test_an_unstorable_result_is_refused_and_nothing_is_written(storage: Storage) -> None:
    instance = stored(storage)
    with pytest.raises(SerializationError, match="item 0"):
        items_of(storage).record_map_item(
            instance.id, STEP, 0, attempts=0, done=True, result=object()
        )
    assert items_of(storage).map_progress(instance.id, STEP) == {}


def test_an_item_of_an_instance_that_is_gone_is_refused(storage: Storage) -> None:
    with pytest.raises(InstanceNotFound):
        items_of(storage).record_map_item(uuid.uuid4(), STEP, 0, attempts=0, done=True)


def test_steps_and_instances_keep_their_items_apart_and_a_delete_takes_its_own(
    storage: Storage,
) -> None:
    first, second = stored(storage), stored(storage)
    items = items_of(storage)
    items.record_map_item(first.id, STEP, 0, attempts=0, done=True, result="first")
    items.record_map_item(first.id, "other.Step", 0, attempts=0, done=True, result="other")
    items.record_map_item(second.id, STEP, 0, attempts=0, done=True, result="second")
    assert items.map_results(first.id, STEP) == ["first"]
    assert items.map_results(first.id, "other.Step") == ["other"]
    storage.delete(first.id)
    assert items.map_progress(first.id, STEP) == {}
    assert items.map_results(second.id, STEP) == ["second"]
