"""Rewinding across a child step, both storages, both runners: a child that has not ended is
cancelled with the rewind (on PostgreSQL its cancel commits with the parent's rewind), one that
ended is left alone, and the step run again starts a new child under the key the cancelled one
released."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus_django import RewindPlan, Status
from hephaestus_django.core.children import children_of
from hephaestus_django.runtime.contract import Storage
from tests.childflows import Order, Ship, Shipment, ShipSlowly, SlowOrder, SlowShipment
from tests.support.runners import RUNNERS, STORAGES, Settle, runner_over, storage_named

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> Storage:
    return storage_named(request.param)


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest, storage: Storage) -> Iterator[Settle]:
    with runner_over(storage, request.param) as settle:
        yield settle


def test_a_child_that_has_not_ended_is_cancelled_and_a_new_one_takes_its_key(
    settle: Settle,
) -> None:
    parent_id = SlowOrder.start({"order": 7})
    settle()
    old = children_of(SlowOrder.get(parent_id))[ShipSlowly.step_key]
    assert SlowShipment.get(old).status is Status.WAITING

    found = SlowOrder.rewind(parent_id, to=ShipSlowly, dry_run=True)
    assert isinstance(found, RewindPlan)
    assert (found.children, found.cancelled_children) == ((old,), (old,))
    assert SlowShipment.get(old).status is Status.WAITING  # dry: nothing changed

    SlowOrder.rewind(parent_id, to=ShipSlowly)
    settle()

    cancelled = SlowShipment.get(old)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.cancellation is not None
    assert cancelled.cancellation.reason == f"its parent {parent_id} was rewound"
    assert cancelled.cancellation.compensate is False
    new = children_of(SlowOrder.get(parent_id))[ShipSlowly.step_key]
    assert new != old
    assert SlowShipment.get(key="shipment-7").id == new  # the key went to the new child

    SlowShipment.resume(new, "picked_up")
    settle()
    parent = SlowOrder.get(parent_id)
    assert parent.status is Status.COMPLETED
    assert parent.current_step.__name__ == "Shipped"


def test_a_rewind_with_compensate_cancels_the_child_with_its_compensations(
    settle: Settle,
) -> None:
    parent_id = SlowOrder.start({"order": 8})
    settle()
    old = children_of(SlowOrder.get(parent_id))[ShipSlowly.step_key]

    SlowOrder.rewind(parent_id, to=ShipSlowly, compensate=True)
    settle()

    cancelled = SlowShipment.get(old)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.cancellation is not None
    assert cancelled.cancellation.compensate is True


def test_a_child_that_ended_is_left_alone_and_forgotten(settle: Settle) -> None:
    parent_id = Order.start({"order": 9})
    settle()
    assert Order.get(parent_id).status is Status.COMPLETED
    old = children_of(Order.get(parent_id))[Ship.step_key]

    found = Order.rewind(parent_id, to=Ship, dry_run=True)
    assert isinstance(found, RewindPlan)
    assert (found.children, found.cancelled_children) == ((old,), ())

    Order.rewind(parent_id, to=Ship)
    settle()

    assert Shipment.get(old).status is Status.COMPLETED
    assert Shipment.get(old).cancellation is None
    parent = Order.get(parent_id)
    assert parent.status is Status.COMPLETED
    new = children_of(parent)[Ship.step_key]
    assert new != old
    assert Shipment.get(new).status is Status.COMPLETED
