"""Cancelling a parent cancels its running children in the transaction of the parent's cancel,
with their compensations when asked; on PostgreSQL a failure on a child's write leaves the
parent and every child as they were."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest

from hephaestus_django import Status
from hephaestus_django.runtime import backends
from tests import childflows
from tests.support.children import EVERY, Drain, drain

__all__ = ["drain"]


@pytest.fixture(autouse=True)
def _unpacked() -> Iterator[None]:
    childflows.UNPACKED.clear()
    yield
    childflows.UNPACKED.clear()


@pytest.mark.parametrize("drain", EVERY, indirect=True)
def test_cancelling_with_compensation_compensates_the_running_child(drain: Drain) -> None:
    order_id = childflows.UndoableOrder.start({"order": 21})
    drain()
    child_id = childflows.UndoableOrder.get(order_id).children["ship_undoably"]
    assert childflows.UndoableShipment.get(child_id).status is Status.WAITING
    childflows.UndoableOrder.cancel(order_id, reason="out of stock", compensate=True)
    drain()
    assert childflows.UndoableOrder.get(order_id).status is Status.CANCELLED
    child = childflows.UndoableShipment.get(child_id)
    assert child.status is Status.CANCELLED
    assert child.cancellation is not None
    assert child.cancellation.compensate is True
    assert child.cancellation.reason == "out of stock"
    assert childflows.UNPACKED == ["21"]


@pytest.mark.parametrize("drain", EVERY, indirect=True)
def test_a_child_that_ended_is_left_as_it_is(drain: Drain) -> None:
    order_id = childflows.SlowOrder.start({"order": 22})
    drain()
    child_id = childflows.SlowOrder.get(order_id).children["ship_slowly"]
    storage = backends.storage()
    # The child ends without telling its parent (as if its end raced the parent's cancel).
    storage.update(child_id, lambda child: _ended(child))
    childflows.SlowOrder.cancel(order_id)
    drain()
    assert childflows.SlowOrder.get(order_id).status is Status.CANCELLED
    assert childflows.SlowShipment.get(child_id).status is Status.COMPLETED


def _ended(child: object) -> object:
    from hephaestus_django.core.instance import Instance, evolve

    assert isinstance(child, Instance)
    return evolve(child, status=Status.COMPLETED, waiting_steps={}, active_steps=frozenset())


def _refusing(storage: object, refused: UUID, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every write of instance ``refused`` through ``storage`` fail, as a dropped
    connection would in the middle of the transaction."""
    for name in ("update", "put"):
        original: Callable[..., object] = getattr(storage, name)

        def failing(
            *args: object, _original: Callable[..., object] = original, **kw: object
        ) -> object:
            target = args[0]
            instance_id = getattr(target, "id", target)
            if str(instance_id) == str(refused):
                raise ConnectionError(f"the connection dropped while writing {refused}")
            return _original(*args, **kw)

        monkeypatch.setattr(storage, name, failing)


@pytest.mark.parametrize("drain", EVERY[2:], indirect=True)
@pytest.mark.parametrize("compensate", [False, True])
def test_a_failed_child_write_leaves_the_parent_and_every_child_as_they_were(
    drain: Drain, monkeypatch: pytest.MonkeyPatch, compensate: bool
) -> None:
    first = childflows.UndoableOrder.start({"order": 23})
    second = childflows.SlowOrder.start({"order": 24})
    drain()
    child_id = childflows.UndoableOrder.get(first).children["ship_undoably"]
    storage = backends.storage()
    before = storage.get(first), storage.get(child_id)
    _refusing(storage, child_id, monkeypatch)
    with pytest.raises(ConnectionError):
        childflows.UndoableOrder.cancel(first, reason="out of stock", compensate=compensate)
    monkeypatch.undo()
    parent, child = storage.get(first), storage.get(child_id)
    assert (parent.status, parent.revision) == (Status.WAITING, before[0].revision)
    assert parent.cancellation is None
    assert (child.status, child.revision) == (Status.WAITING, before[1].revision)
    assert childflows.UNPACKED == []
    # Nothing was left half-done: the cancel goes through once the writes do.
    childflows.UndoableOrder.cancel(first, compensate=compensate)
    drain()
    assert childflows.UndoableOrder.get(first).status is Status.CANCELLED
    assert childflows.UndoableShipment.get(child_id).status is Status.CANCELLED
    assert childflows.SlowOrder.get(second).status is Status.WAITING
