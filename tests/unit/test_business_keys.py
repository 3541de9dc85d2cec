"""Business keys through the public API: idempotent starts, lookups by key, bad keys refused.

On InMemoryStorage, with both runners (the storage contract checks each backend's atomicity;
tests/processes checks eight processes racing on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from hephaestus_django import (
    Done,
    DuplicateInstanceError,
    InstanceNotFound,
    InvalidInstanceError,
    KeyScope,
    Status,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from tests.support.workflows import AwaitPayment, Fulfilment


class OncePerOrder(Workflow):
    key_scope = KeyScope.WORKFLOW
    start_step = AwaitPayment
    transitions = {AwaitPayment: {"paid": Done}}


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture(params=["local", "queued"])
def settle(
    request: pytest.FixtureRequest, storage: InMemoryStorage
) -> Iterator[Callable[[], None]]:
    if request.param == "local":
        configure(storages={"default": storage}, runner=LocalRunner())
        yield lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=runner)
        yield lambda: dispatcher.drain() and None
        runner.close()
    configure()


def test_starting_a_key_twice_returns_the_first_instance(
    settle: Callable[[], None], storage: InMemoryStorage
) -> None:
    first = Fulfilment.start({"order": 1001}, key="order-A-1001")
    settle()
    again = Fulfilment.start({"order": 1001}, key="order-A-1001")
    settle()

    assert again == first
    assert len(storage) == 1
    assert Fulfilment.get(key="order-A-1001").id == first
    with pytest.raises(DuplicateInstanceError) as raised:
        Fulfilment.start({}, key="order-A-1001", if_exists="raise")
    assert raised.value.existing_id == first
    assert len(storage) == 1


def test_resume_retry_and_cancel_take_the_key(settle: Callable[[], None]) -> None:
    first = Fulfilment.start({}, key="order-1")
    settle()
    Fulfilment.resume(key="order-1", event="paid")
    settle()
    assert Fulfilment.get(first).status is Status.COMPLETED

    # the active scope frees the key once the instance completed: a new one may start
    second = Fulfilment.start({}, key="order-1")
    settle()
    assert second != first
    assert Fulfilment.get(key="order-1").id == second  # the one holding the key
    assert [instance.id for instance in Fulfilment.list(key="order-1")] == [first, second]
    assert Fulfilment.cancel(key="order-1", reason="refunded").status is Status.CANCELLED
    assert Fulfilment.get(key="order-1").id == second  # none holds it: the newest


def test_the_workflow_scope_never_frees_a_key(settle: Callable[[], None]) -> None:
    first = OncePerOrder.start({}, key="order-2")
    settle()
    OncePerOrder.resume(key="order-2", event="paid")
    settle()
    assert OncePerOrder.start({}, key="order-2") == first


def test_a_key_names_an_instance_of_this_workflow_only(settle: Callable[[], None]) -> None:
    Fulfilment.start({}, key="order-3")
    settle()
    with pytest.raises(InstanceNotFound, match="no instance of OncePerOrder has the business key"):
        OncePerOrder.get(key="order-3")
    assert Workflow.get(key="order-3").workflow is Fulfilment
    with pytest.raises(TypeError, match="not both nor neither"):
        Fulfilment.get()
    with pytest.raises(TypeError, match="needs the event"):
        Fulfilment.resume(key="order-3")


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (42, "must be a string, not int"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 256, "256 characters long; the most is 255"),
        ("a\x00b", "NUL"),
    ],
)
def test_a_bad_key_is_refused_before_anything_is_written(
    settle: Callable[[], None], storage: InMemoryStorage, key: object, problem: str
) -> None:
    with pytest.raises(InvalidInstanceError, match=problem):
        Fulfilment.start({}, key=key)  # type: ignore[arg-type]
    assert len(storage) == 0


def test_a_key_of_the_longest_length_is_kept(settle: Callable[[], None]) -> None:
    instance_id = Fulfilment.start({}, key="k" * 255)
    assert Fulfilment.get(instance_id).business_key == "k" * 255


def test_if_exists_takes_return_or_raise(settle: Callable[[], None]) -> None:
    with pytest.raises(ValueError, match="if_exists must be 'return' or 'raise'"):
        Fulfilment.start({}, key="k", if_exists="ignore")  # type: ignore[arg-type]


def test_a_malformed_key_scope_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(WorkflowDefinitionError) as raised:

        class Broken(Workflow):
            key_scope = "per-tenant"
            start_step = AwaitPayment
            transitions = {AwaitPayment: {"paid": Done}}

    assert raised.value.rule == "malformed-key-scope"
    assert "'active', 'workflow', 'version', 'global', 'none'" in str(raised.value)
