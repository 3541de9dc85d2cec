"""Child workflows on PostgreSQL, both runners: the child's start and end are written in the
transaction of the parent's wait and of the parent's resume."""

from __future__ import annotations

import pytest

from hephaestus_django import Status
from hephaestus_django.runtime import backends
from tests import childflows
from tests.support.children import Drain, drain

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit

__all__ = ["drain"]  # the fixture, shared with the other child-workflow tests


def test_the_parent_goes_on_with_the_childs_results(drain: Drain) -> None:
    order_id = childflows.Order.start({"order": 1})
    drain()
    order = childflows.Order.get(order_id)
    assert order.status is Status.COMPLETED
    assert order.context.result(childflows.Bill) == {"shipped": {"pack": {"parcel": "parcel-1"}}}
    assert childflows.Shipment.get(order.children["ship"]).parent == order_id


def test_grandchildren(drain: Drain) -> None:
    batch_id = childflows.Batch.start({"order": 2})
    drain()
    assert childflows.Batch.get(batch_id).status is Status.COMPLETED


def test_the_childs_end_and_the_parents_wake_commit_together(
    drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = childflows.SlowOrder.start({"order": 3})
    drain()
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    runner = backends.runner()

    def broken(*args: object, **kwargs: object) -> object:
        raise ConnectionError("the database went away while waking the parent")

    monkeypatch.setattr(runner, "_wake_parent", broken)

    def deliver() -> None:
        childflows.SlowShipment.resume(child_id, "picked_up")
        drain()

    with pytest.raises(ConnectionError):
        deliver()
    # Neither the child's end nor anything of the parent was written.
    assert childflows.SlowShipment.get(child_id).status is Status.WAITING
    assert childflows.SlowOrder.get(order_id).status is Status.WAITING
    monkeypatch.undo()
    childflows.SlowShipment.resume(child_id, "picked_up")
    drain()
    order = childflows.SlowOrder.get(order_id)
    assert order.status is Status.COMPLETED
    assert [entry.step for entry in order.execution_history].count(childflows.ShipSlowly) == 1


def test_the_parents_wait_and_the_childs_start_commit_together(
    drain: Drain, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = backends.runner()

    def broken(*args: object, **kwargs: object) -> object:
        raise ConnectionError("the database went away while starting the child")

    monkeypatch.setattr(runner, "_begin_child", broken)

    def start() -> None:
        childflows.Order.start({"order": 4})
        drain()

    with pytest.raises(ConnectionError):
        start()
    storage = backends.storage()
    assert storage.query(workflow=childflows.Shipment) == []
    for order in storage.query(workflow=childflows.Order):
        assert order.status is Status.RUNNING  # its step runs again once its lease lapses
        assert order.waiting_steps == {}
        assert order.children == {}
