"""Maps over child workflows through the public API, on both storages and both runners.

``QueuedRunner`` runs here with the in-memory dispatcher, its jobs drained in this process.
"""

from __future__ import annotations

from typing import Any

import pytest

from hephaestus_django import Status
from hephaestus_django.core.errors import InvalidQueryError
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import backends
from tests.support import map_children
from tests.support.children import EVERY, Drain, drain
from tests.support.map_children import (
    Consignment,
    Count,
    Parcel,
    ShipParcels,
    ShipSlowParcels,
    SlowConsignment,
    SlowParcel,
    items,
)

__all__ = ["drain"]

pytestmark = pytest.mark.parametrize("drain", EVERY, indirect=True)


@pytest.fixture(autouse=True)
def _reset() -> None:
    map_children.reset()


def run(drain: Drain, context: dict[str, Any]) -> Instance:
    instance_id = Consignment.start(context)
    drain()
    return Consignment.get(instance_id)


def parcels() -> list[Instance]:
    return backends.storage().query(workflow=Parcel, limit=1_000)


def joins(instance: Instance) -> int:
    return sum(1 for entry in instance.execution_history if entry.step is Count)


def test_each_item_is_a_child_and_the_results_come_in_item_order(drain: Drain) -> None:
    instance = run(drain, {"items": items(7)})
    assert instance.status is Status.COMPLETED
    assert instance.context.result(ShipParcels) == [
        {"pack_parcel": {"parcel": f"parcel-{index}"}} for index in range(7)
    ]
    assert instance.context.result(Count) == {"parcels": 7}
    assert joins(instance) == 1
    children = parcels()
    assert len(children) == 7
    assert all(child.status is Status.COMPLETED for child in children)
    assert all(child.parent == instance.id for child in children)


def test_no_more_children_than_in_flight_run_at_once(drain: Drain) -> None:
    instance = run(drain, {"items": items(9)})
    assert instance.status is Status.COMPLETED
    assert 1 <= map_children.PEAK["running"] <= ShipParcels.in_flight


def test_an_empty_list_goes_straight_on(drain: Drain) -> None:
    instance = run(drain, {"items": []})
    assert instance.status is Status.COMPLETED
    assert instance.context.result(ShipParcels) == []
    assert parcels() == []


def test_a_failed_child_is_retried_as_a_new_child(drain: Drain) -> None:
    instance = run(drain, {"items": [*items(3), {"id": 3, "fail": 1}]})
    assert instance.status is Status.COMPLETED
    assert map_children.RUNS["3"] == 2
    assert len(parcels()) == 5  # the failed child stays, failed; a new one took its item
    assert sorted(child.status.value for child in parcels()).count("failed") == 1
    assert joins(instance) == 1


def test_a_child_failing_for_good_fails_the_step_once_the_others_ended(drain: Drain) -> None:
    instance = run(drain, {"items": [{"id": 0, "fail": "always"}, *items(5)[1:]]})
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type.endswith("MapItemError")
    assert instance.error.step is ShipParcels
    assert "item 0" in instance.error.message
    assert map_children.RUNS["0"] == 2  # the step's policy: two attempts
    assert joins(instance) == 0
    assert all(
        child.status in (Status.COMPLETED, Status.FAILED) for child in parcels()
    )  # nothing left running


def test_retry_starts_the_failed_item_anew_and_keeps_the_items_done(drain: Drain) -> None:
    instance = run(drain, {"items": [{"id": 0, "fail": 2}, *items(3)[1:]]})
    assert instance.status is Status.FAILED
    Consignment.retry(instance.id)
    drain()
    instance = Consignment.get(instance.id)
    assert instance.status is Status.COMPLETED
    assert map_children.RUNS["0"] == 3
    assert map_children.RUNS["1"] == map_children.RUNS["2"] == 1
    assert joins(instance) == 1


def test_a_business_key_makes_a_rerun_adopt_the_children_done(drain: Drain) -> None:
    instance = run(drain, {"items": [*items(2), {"id": 2, "fail": 2}], "order": 8})
    assert instance.status is Status.FAILED
    Consignment.retry(instance.id)
    drain()
    instance = Consignment.get(instance.id)
    assert instance.status is Status.COMPLETED
    assert map_children.RUNS["0"] == map_children.RUNS["1"] == 1


def waiting_children() -> list[Instance]:
    return [
        child
        for child in backends.storage().query(workflow=SlowParcel, limit=1_000)
        if child.status is Status.WAITING
    ]


def test_the_parent_waits_and_each_childs_end_wakes_it_once(drain: Drain) -> None:
    parent_id = SlowConsignment.start({"items": list(range(5))})
    drain()
    resumed = 0
    while waiting := waiting_children():
        assert len(waiting) <= ShipSlowParcels.in_flight
        assert SlowConsignment.get(parent_id).status is Status.WAITING
        SlowParcel.resume(waiting[0].id, "picked_up")  # no process runs the parent meanwhile
        drain()
        resumed += 1
    assert resumed == 5
    parent = SlowConsignment.get(parent_id)
    assert parent.status is Status.COMPLETED
    assert [result["pack_slowly"] for result in parent.context.result(ShipSlowParcels)] == [
        {"parcel": f"parcel-{index}"} for index in range(5)
    ]
    assert joins(parent) == 1


def test_a_cancelled_child_fails_its_item_and_the_step(drain: Drain) -> None:
    parent_id = SlowConsignment.start({"items": list(range(4))})
    drain()
    first, *others = waiting_children()
    SlowParcel.cancel(first.id)
    drain()
    assert SlowConsignment.get(parent_id).status is Status.WAITING  # the others run on
    assert len(waiting_children()) == len(others)  # and no new child started
    for child in others:
        SlowParcel.resume(child.id, "picked_up")
        drain()
    parent = SlowConsignment.get(parent_id)
    assert parent.status is Status.FAILED
    assert parent.error is not None
    assert "cancelled" in parent.error.message
    assert len(backends.storage().query(workflow=SlowParcel, limit=1_000)) == 3


def test_an_item_whose_child_cannot_be_built_fails_the_step_and_starts_no_child(
    drain: Drain,
) -> None:
    instance = run(drain, {"items": [*items(3), {"id": 3, "unbuildable": True}]})
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type.endswith("ChildContextError")
    assert "item 3" in instance.error.message
    assert parcels() == []


def test_cancelling_the_parent_cancels_the_maps_running_children(drain: Drain) -> None:
    parent_id = SlowConsignment.start({"items": list(range(5))})
    drain()
    running = waiting_children()
    assert len(running) == ShipSlowParcels.in_flight
    assert {child.id for child in SlowParcel.list(parent=parent_id)} == {c.id for c in running}
    with pytest.raises(InvalidQueryError, match="parent must be an instance id"):
        SlowParcel.list(parent="not-an-id")

    SlowConsignment.cancel(parent_id)
    drain()
    assert SlowConsignment.get(parent_id).status is Status.CANCELLED
    children = backends.storage().query(workflow=SlowParcel, limit=1_000)
    assert len(children) == ShipSlowParcels.in_flight  # none started after the cancel
    assert all(child.status is Status.CANCELLED for child in children)
    assert all(f"its parent {parent_id}" in child.cancellation.reason for child in children)


def test_rewinding_the_parent_to_the_map_cancels_its_running_children(drain: Drain) -> None:
    parent_id = SlowConsignment.start({"items": list(range(2))})
    drain()
    first = {child.id for child in waiting_children()}
    assert len(first) == 2

    SlowConsignment.rewind(parent_id, to=ShipSlowParcels)
    drain()
    old = [SlowParcel.get(child_id) for child_id in first]
    assert all(child.status is Status.CANCELLED for child in old)
    assert all(f"its parent {parent_id} was rewound" in child.cancellation.reason for child in old)
    again = waiting_children()  # the map ran again: new children
    assert len(again) == 2
    assert not {child.id for child in again} & first
    for child in again:
        SlowParcel.resume(child.id, "picked_up")
        drain()
    assert SlowConsignment.get(parent_id).status is Status.COMPLETED
