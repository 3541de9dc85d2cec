"""Cancellation and compensation: the engine's rules, and both runners through the public API.

On InMemoryStorage with a clock the test moves. With ``QueuedRunner`` the steps run when the
test drains the in-memory queue, as a worker would run them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from hephaestus_django import (
    Done,
    EngineError,
    InstanceNotCancellableError,
    InstanceNotFound,
    InstanceNotWaitingError,
    InvalidInstanceError,
    SerializationError,
    Status,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Cancellation, Context
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.document import from_row, to_row
from tests.sagas import (
    BROKEN_REFUNDS,
    EFFECTS,
    AwaitShipment,
    CancelsItself,
    Charge,
    Notify,
    Order,
    Reserve,
    SelfCancelling,
    UndoneOrder,
)
from tests.timers import Clock


@pytest.fixture(autouse=True)
def _fresh_effects() -> Iterator[None]:
    EFFECTS.clear()
    BROKEN_REFUNDS.clear()
    yield
    EFFECTS.clear()
    BROKEN_REFUNDS.clear()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def storage(clock: Clock) -> InMemoryStorage:
    return InMemoryStorage(clock=clock)


Settle = Callable[[], None]
"""Run what the runner left to do: nothing for LocalRunner, the queue for QueuedRunner."""


@pytest.fixture(params=["local", "queued"])
def settle(request: pytest.FixtureRequest, storage: InMemoryStorage) -> Iterator[Settle]:
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


def work(storage: InMemoryStorage, settle: Settle) -> None:
    """A worker's pass (due timers, lapsed leases), then what it enqueued."""
    from hephaestus_django.runtime import backends

    backends.runner().work(storage=storage)
    settle()


def shipped_order(settle: Settle) -> UUID:
    """An order that reserved, notified, charged, and now waits for its shipment."""
    instance_id = Order.start({})
    settle()
    assert Order.get(instance_id).status is Status.WAITING
    return instance_id


# --- cancelling --------------------------------------------------------------------------


def test_a_waiting_instance_is_cancelled_with_its_reason_and_its_timer_dropped(
    settle: Settle, storage: InMemoryStorage, clock: Clock
) -> None:
    instance_id = shipped_order(settle)
    assert engine.next_due_time(Order.get(instance_id)) is not None

    cancelled = Order.cancel(instance_id, "customer called")
    settle()

    stored = Order.get(instance_id)
    assert cancelled.status is stored.status is Status.CANCELLED
    assert stored.cancellation == Cancellation(
        at=clock.now, reason="customer called", steps=(AwaitShipment,), compensate=False
    )
    assert stored.waiting_steps == {}
    assert stored.active_steps == frozenset()
    assert engine.next_due_time(stored) is None
    assert stored.lease_owner is None
    assert Order.list(status=Status.CANCELLED) == [stored]

    clock.advance(days=3)  # the shipment's timeout is gone with it
    work(storage, settle)
    assert Order.get(instance_id).revision == stored.revision
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge"]
    with pytest.raises(InstanceNotWaitingError, match="cancelled"):
        Order.resume(instance_id, "shipped")


@pytest.mark.parametrize("status", [Status.COMPLETED, Status.FAILED, Status.CANCELLED])
def test_cancelling_an_ended_instance_is_refused_and_changes_nothing(
    settle: Settle, status: Status
) -> None:
    instance_id = Order.start({"decline": status is Status.FAILED})
    settle()
    if status is Status.COMPLETED:
        Order.resume(instance_id, "shipped")
        settle()
    elif status is Status.CANCELLED:
        Order.cancel(instance_id)
    before = Order.get(instance_id)
    assert before.status is status

    with pytest.raises(InstanceNotCancellableError) as raised:
        Order.cancel(instance_id, "too late", compensate=True)

    assert str(instance_id) in str(raised.value)
    assert status.value in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    after = Order.get(instance_id)
    assert (after.revision, after.status, after.cancellation) == (
        before.revision,
        before.status,
        before.cancellation,
    )


def test_a_reason_that_is_not_text_is_refused_before_anything_is_written(
    settle: Settle,
) -> None:
    instance_id = shipped_order(settle)
    revision = Order.get(instance_id).revision
    with pytest.raises(InvalidInstanceError, match=f"cancelling instance {instance_id}"):
        Order.cancel(instance_id, {"why": "no"})  # type: ignore[arg-type]
    with pytest.raises(InvalidInstanceError, match="1001 characters long; the most is 1000"):
        Order.cancel(instance_id, "x" * 1001)
    assert Order.get(instance_id).revision == revision


def test_cancel_through_another_workflow_class_is_refused(settle: Settle) -> None:
    instance_id = shipped_order(settle)
    with pytest.raises(InstanceNotFound, match="not UndoneOrder"):
        UndoneOrder.cancel(instance_id)
    assert Workflow.cancel(instance_id).status is Status.CANCELLED


def test_the_queued_steps_of_a_cancelled_instance_do_nothing(storage: InMemoryStorage) -> None:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    try:
        instance_id = Order.start({})
        assert len(dispatcher.jobs) == 1  # Reserve's job, not run yet

        Order.cancel(instance_id)
        dispatcher.drain()

        assert EFFECTS[instance_id] == []
        assert Order.get(instance_id).status is Status.CANCELLED
        assert dispatcher.jobs == []
    finally:
        runner.close()
        configure()


def test_a_step_running_when_its_instance_is_cancelled_has_its_result_discarded(
    settle: Settle,
) -> None:
    instance_id = SelfCancelling.start({})
    settle()

    instance = SelfCancelling.get(instance_id)
    assert EFFECTS[instance_id] == ["ran"]
    assert instance.status is Status.CANCELLED
    assert instance.execution_history == ()
    assert instance.cancellation is not None
    assert instance.cancellation.steps == (CancelsItself,)
    assert instance.completed_steps == frozenset()
    assert instance.lease_owner is None  # the lease of the runner that ran the step is gone


# --- compensation ------------------------------------------------------------------------


def test_cancel_with_compensation_undoes_the_completed_steps_last_first(settle: Settle) -> None:
    instance_id = shipped_order(settle)

    Order.cancel(instance_id, "out of stock", compensate=True)
    settle()

    instance = Order.get(instance_id)
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge", "refund", "release"]
    assert instance.status is Status.CANCELLED
    assert instance.cancellation is not None
    assert instance.cancellation.compensate
    assert instance.compensation is not None
    assert instance.compensation.done
    compensations = [
        (entry.step, entry.event) for entry in instance.execution_history if entry.compensating
    ]
    assert compensations == [(Charge, "compensated"), (Reserve, "compensated")]
    assert instance.current_step is AwaitShipment  # where it stood, not the last step undone
    assert instance.error is None
    assert instance.lease_owner is None


def test_an_instance_with_nothing_to_compensate_is_simply_cancelled(settle: Settle) -> None:
    class AwaitCall(WaitForEvent):
        events = ("called",)

    class Quiet(Workflow):
        start_step = Notify
        transitions = {Notify: {"sent": AwaitCall}, AwaitCall: {"called": Done}}

    instance_id = Quiet.start({})
    settle()
    instance = Quiet.cancel(instance_id, compensate=True)
    assert instance.status is Status.CANCELLED
    assert instance.compensation is None
    assert instance.cancellation is not None
    assert instance.cancellation.compensate


def test_a_failure_is_compensated_and_the_instance_ends_failed_with_it(settle: Settle) -> None:
    instance_id = UndoneOrder.start({"decline": True})
    settle()

    instance = UndoneOrder.get(instance_id)
    assert EFFECTS[instance_id] == ["reserve", "notify", "release"]
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert (instance.error.step, instance.error.message) == (Charge, "card declined")
    assert instance.current_step is Charge  # where it failed, not the last step it undid
    assert [
        (entry.step, entry.event, entry.failed)
        for entry in instance.execution_history
        if entry.compensating
    ] == [(Charge, "", True), (Reserve, "compensated", False)]
    assert instance.compensation is not None
    assert instance.compensation.ends is Status.FAILED
    with pytest.raises(EngineError, match=r"compensated; it cannot be retried"):
        UndoneOrder.retry(instance_id)


def test_a_compensation_that_keeps_failing_fails_the_instance_once_and_retry_resumes_it(
    settle: Settle, storage: InMemoryStorage, clock: Clock
) -> None:
    instance_id = shipped_order(settle)
    BROKEN_REFUNDS.add(instance_id)

    Order.cancel(instance_id, compensate=True)
    settle()
    retrying = Order.get(instance_id)
    assert retrying.status is Status.WAITING  # the refund waits for its second attempt
    assert retrying.waiting_steps[Charge].attempt == 2
    with pytest.raises(InstanceNotCancellableError, match="already compensating"):
        Order.cancel(instance_id)

    clock.advance(seconds=5)
    work(storage, settle)
    failed = Order.get(instance_id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert (failed.error.step, failed.error.error_type) == (
        Charge,
        "tests.sagas.RefundDown",
    )
    assert failed.compensating
    clock.advance(days=1)
    work(storage, settle)  # never loops
    assert Order.get(instance_id).revision == failed.revision
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge"]

    BROKEN_REFUNDS.discard(instance_id)  # the provider is back
    Order.retry(instance_id)
    settle()
    done = Order.get(instance_id)
    assert done.status is Status.CANCELLED
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge", "refund", "release"]
    failed_attempts = [entry for entry in done.execution_history if entry.compensating]
    assert [(entry.step, entry.failed) for entry in failed_attempts] == [
        (Charge, True),
        (Charge, True),
        (Charge, False),
        (Reserve, False),
    ]


# --- the engine and the stored document ---------------------------------------------------


def test_a_result_of_the_wrong_kind_is_refused_by_the_engine() -> None:
    instance = engine.start(engine.new_instance(Order, {}))
    activation = engine.activation(instance, Reserve)
    assert not activation.compensating
    result = engine.Executed(Reserve, outcome=None, compensating=True)
    assert not engine.accepts(instance, result)
    with pytest.raises(EngineError, match="compensation"):
        engine.apply(instance, [result], now=Clock().now)


def test_cancellation_and_compensation_survive_the_stored_document(settle: Settle) -> None:
    instance_id = shipped_order(settle)
    BROKEN_REFUNDS.add(instance_id)
    revision = Order.get(instance_id).revision
    with pytest.raises(SerializationError, match=r"cancellation\.reason"):
        Order.cancel(instance_id, "a reason with \x00 in it", compensate=True)
    assert Order.get(instance_id).revision == revision

    Order.cancel(instance_id, "a reason — with ünïcode", compensate=True)
    settle()
    instance = Order.get(instance_id)
    assert instance.compensation is not None
    assert instance.cancellation is not None

    decoded = from_row(to_row(instance))

    assert decoded.cancellation == instance.cancellation
    assert decoded.compensation == instance.compensation
    assert decoded.execution_history == instance.execution_history
    assert decoded.waiting_steps == instance.waiting_steps


def test_compensate_on_failure_must_be_a_bool() -> None:
    with pytest.raises(WorkflowDefinitionError) as raised:

        class Broken(Workflow):
            compensate_on_failure = "yes"  # type: ignore[assignment]
            start_step = Reserve
            transitions = {Reserve: {"reserved": Done}}

    assert raised.value.rule == "malformed-compensation"
    assert "Broken" in str(raised.value)


def test_only_steps_that_define_compensate_are_compensable() -> None:
    assert Reserve.compensable()
    assert Charge.compensable()
    assert not Notify.compensable()
    assert not Done.compensable()
    with pytest.raises(NotImplementedError, match="Notify does not define compensate"):
        Notify().compensate(engine.new_instance(Order, {}), {}, Context())
