"""Child workflows through the public API, on both runners (InMemoryStorage; the queued runner
on the in-memory queue, drained as a worker would)."""

from __future__ import annotations

import logging

import pytest

from hephaestus_django import (
    Child,
    ChildContextError,
    Done,
    Status,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.errors import StepDefinitionError
from hephaestus_django.runtime.config import backends
from tests import childflows
from tests.support.children import Drain, drain

__all__ = ["drain"]  # the fixture, shared with the other child-workflow tests


def test_the_child_completes_and_the_parent_goes_on_with_its_results(drain: Drain) -> None:
    order_id = childflows.Order.start({"order": 7})
    drain()
    order = childflows.Order.get(order_id)
    assert order.status is Status.COMPLETED
    assert order.current_step is childflows.Shipped
    child_id = order.children["ship"]
    child = childflows.Shipment.get(child_id)
    assert child.status is Status.COMPLETED
    assert child.parent == order_id
    assert order.context.result(childflows.Ship) == {"pack": {"parcel": "parcel-7"}}
    assert order.context.result(childflows.Bill) == {"shipped": {"pack": {"parcel": "parcel-7"}}}
    assert [entry.event for entry in order.execution_history][:1] == ["completed"]


def test_a_failed_child_is_the_steps_failed_event(drain: Drain) -> None:
    order_id = childflows.Order.start({"order": 8, "fail": True})
    drain()
    order = childflows.Order.get(order_id)
    assert order.status is Status.COMPLETED
    assert order.current_step is childflows.NotShipped
    assert childflows.Shipment.get(order.children["ship"]).status is Status.FAILED


def test_the_parent_waits_until_the_child_ends_and_is_resumed_once(drain: Drain) -> None:
    order_id = childflows.SlowOrder.start({"order": 9})
    drain()
    order = childflows.SlowOrder.get(order_id)
    assert order.status is Status.WAITING
    child_id = order.children["ship_slowly"]
    childflows.SlowShipment.resume(child_id, "picked_up")
    drain()
    order = childflows.SlowOrder.get(order_id)
    assert order.status is Status.COMPLETED
    assert [entry.step for entry in order.execution_history].count(childflows.ShipSlowly) == 1


def test_grandchildren_end_their_grandparent(drain: Drain) -> None:
    batch_id = childflows.Batch.start({"order": 10})
    drain()
    batch = childflows.Batch.get(batch_id)
    assert batch.status is Status.COMPLETED
    assert batch.current_step is childflows.Shipped
    order = childflows.Order.get(batch.children["ship_order"])
    assert order.parent == batch_id
    assert childflows.Shipment.get(order.children["ship"]).parent == order.id


def test_cancelling_the_parent_cancels_its_running_child(drain: Drain) -> None:
    order_id = childflows.SlowOrder.start({"order": 11})
    drain()
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    childflows.SlowOrder.cancel(order_id, reason="customer changed their mind")
    drain()
    assert childflows.SlowOrder.get(order_id).status is Status.CANCELLED
    child = childflows.SlowShipment.get(child_id)
    assert child.status is Status.CANCELLED
    assert child.cancellation is not None
    assert child.cancellation.reason == "customer changed their mind"


def test_cancelling_the_child_is_the_parents_cancelled_event(drain: Drain) -> None:
    order_id = childflows.SlowOrder.start({"order": 12})
    drain()
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    childflows.SlowShipment.cancel(child_id)
    drain()
    order = childflows.SlowOrder.get(order_id)
    assert order.status is Status.COMPLETED
    assert order.current_step is childflows.NotShipped
    assert order.execution_history[0].event == "cancelled"


def test_a_rerun_parent_finds_its_child_by_key(drain: Drain) -> None:
    first = childflows.SlowOrder.start({"order": 13})
    drain()
    child_id = childflows.SlowOrder.get(first).children["ship_slowly"]
    backends.storage().delete(first)
    again = childflows.SlowOrder.start({"order": 13})
    drain()
    assert childflows.SlowOrder.get(again).children["ship_slowly"] == child_id
    assert childflows.SlowShipment.get(child_id).parent == again
    assert len(backends.storage().query(key="shipment-13")) == 1
    childflows.SlowShipment.resume(child_id, "picked_up")
    drain()
    assert childflows.SlowOrder.get(again).status is Status.COMPLETED


def test_a_child_whose_parent_was_deleted_finishes_and_says_so(
    drain: Drain, caplog: pytest.LogCaptureFixture
) -> None:
    order_id = childflows.SlowOrder.start({"order": 14})
    drain()
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    backends.storage().delete(order_id)
    with caplog.at_level(logging.WARNING, logger="hephaestus_django.children"):
        childflows.SlowShipment.resume(child_id, "picked_up")
        drain()
    assert childflows.SlowShipment.get(child_id).status is Status.COMPLETED
    assert f"its parent {order_id} no longer exists" in caplog.text


def test_a_child_step_must_name_a_workflow() -> None:
    with pytest.raises(StepDefinitionError, match="names no workflow"):

        class Nothing(Child):
            pass

    with pytest.raises(StepDefinitionError, match="workflow class or its dotted path"):

        class NotAWorkflow(Child):
            workflow = int  # type: ignore[assignment]


def test_a_workflow_may_not_start_itself() -> None:
    from hephaestus_django import Done, Workflow

    class StartsItself(Child):
        workflow = f"{__name__}.test_a_workflow_may_not_start_itself.<locals>.Loop"

    with pytest.raises(WorkflowDefinitionError) as raised:

        class Loop(Workflow):
            start = StartsItself
            transitions = {StartsItself: {"completed": Done, "failed": Done, "cancelled": Done}}

    assert raised.value.rule == "child-cycle"


class Ping(Child):
    workflow = f"{__name__}.test_a_workflow_may_not_start_itself_through_another.<locals>.Pong"


class PingFlow(Workflow):
    start = Ping
    transitions = {Ping: {"completed": Done, "failed": Done, "cancelled": Done}}


def test_a_workflow_may_not_start_itself_through_another() -> None:
    class Pongs(Child):
        workflow = PingFlow

    with pytest.raises(WorkflowDefinitionError, match="PingFlow") as raised:

        class Pong(Workflow):
            start = Pongs
            transitions = {Pongs: {"completed": Done, "failed": Done, "cancelled": Done}}

    assert raised.value.rule == "child-cycle"


def test_the_error_keeps_the_original_as_its_cause() -> None:
    order = childflows.CarelessOrder
    step = childflows.ShipCarelessly()
    instance = engine.start(engine.new_instance(order, {"bad": "raises"}))
    with pytest.raises(ChildContextError) as raised:
        step.execute(instance, {}, instance.context)
    assert isinstance(raised.value.__cause__, LookupError)
    assert raised.value.instance_id == instance.id
    assert raised.value.child == "Shipment"
    assert raised.value.step == "ShipCarelessly"
