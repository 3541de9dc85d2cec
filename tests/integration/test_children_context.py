"""A child whose context cannot be stored fails its parent's step, on every storage and runner:
recorded as that step's failure under its retry policy, naming the parent, the step and the
child workflow, and nothing of the child, or half of the parent's transition, is written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hephaestus_django import Status
from hephaestus_django.runtime import backends
from tests import childflows
from tests.support.children import EVERY, Drain, drain
from tests.timers import make_due

pytestmark = pytest.mark.parametrize("drain", EVERY, indirect=True)
__all__ = ["drain"]


@pytest.fixture(autouse=True)
def _runs() -> Iterator[None]:
    childflows.RUNS.clear()
    yield
    childflows.RUNS.clear()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("type", "cannot store the child's context.initial.packed_by"),
        ("size", 'HEPHAESTUS["MAX_STATE_BYTES"]'),
        ("raises", "LookupError: no warehouse holds the order"),
    ],
)
def test_an_unstorable_child_context_fails_the_parents_step_under_its_retry_policy(
    drain: Drain, bad: str, problem: str
) -> None:
    order_id = childflows.CarelessOrder.start({"bad": bad})
    drain()
    storage = backends.storage()
    if childflows.CarelessOrder.get(order_id).status is Status.WAITING:  # to retry: due now
        make_due(storage, order_id)
        backends.runner().work(storage=storage)
        drain()
    order = childflows.CarelessOrder.get(order_id)
    assert order.status is Status.FAILED
    assert order.error is not None
    assert order.error.step is childflows.ShipCarelessly
    assert order.error.error_type.endswith("ChildContextError")
    message = order.error.message
    assert str(order_id) in message
    assert "ShipCarelessly" in message
    assert "child workflow Shipment" in message
    assert problem in message
    assert [str(order_id)] * 2 == childflows.RUNS  # its policy's attempts, no more
    assert storage.query(workflow=childflows.Shipment) == []
    assert order.children == {}
