"""Cancellation and compensation on PostgreSQL: both runners, the stored row, the ORM."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import UUID

import pytest
from django.db import connection

from hephaestus_django import (
    InMemoryDispatcher,
    InstanceNotCancellableError,
    LocalRunner,
    QueuedRunner,
    Status,
)
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.runtime import configure
from hephaestus_django.storage import DjangoStorage
from tests.sagas import BROKEN_REFUNDS, EFFECTS, Charge, Order, Reserve, UndoneOrder
from tests.timers import make_due

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(autouse=True)
def _fresh_effects() -> Iterator[None]:
    EFFECTS.clear()
    BROKEN_REFUNDS.clear()
    yield
    EFFECTS.clear()
    BROKEN_REFUNDS.clear()


DISPATCHER: list[InMemoryDispatcher] = []
"""The queue of the test's QueuedRunner, if it runs on one."""


@pytest.fixture(params=["local", "queued"])
def settle(request: pytest.FixtureRequest) -> Iterator[Callable[[], None]]:
    storage = DjangoStorage()
    if request.param == "local":
        configure(storages={"default": storage}, runner=LocalRunner())
        yield lambda: None
    else:
        dispatcher = InMemoryDispatcher()
        runner = QueuedRunner(dispatcher=dispatcher)
        configure(storages={"default": storage}, runner=runner)
        DISPATCHER.append(dispatcher)
        yield lambda: dispatcher.drain() and None
        DISPATCHER.clear()
        runner.close()
    configure()


def fire_timers(instance_id: UUID) -> None:
    """Make the instance's timers due (the database's clock cannot be moved), and fire them
    as the runner would: the worker's sweep, or the wake-up job the job engine delivers."""
    from hephaestus_django.runtime import backends

    storage = backends.storage("default")
    make_due(storage, instance_id)
    if DISPATCHER:
        for job in DISPATCHER[0].take():
            DISPATCHER[0].run(job)
    else:
        backends.runner().work(storage=storage)


def test_a_compensated_cancel_is_stored_and_found_by_status(settle: Callable[[], None]) -> None:
    instance_id = Order.start({})
    settle()

    Order.cancel(instance_id, "out of stock", compensate=True)
    settle()

    row = WorkflowInstance.objects.get(id=instance_id)
    assert row.status == "cancelled"
    assert row.due_at is None
    assert row.lease_owner is None
    assert list(WorkflowInstance.objects.cancelled().values_list("id", flat=True)) == [instance_id]
    assert Order.list(status="cancelled")[0].id == instance_id
    assert row.state["cancellation"]["reason"] == "out of stock"
    assert row.state["compensation"]["pending"] == []
    instance = row.to_instance()
    assert instance.cancellation is not None
    assert instance.cancellation.compensate
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge", "refund", "release"]
    with pytest.raises(InstanceNotCancellableError):
        Order.cancel(instance_id)


def test_a_failed_compensation_is_retried_by_the_worker_then_fails_the_instance(
    settle: Callable[[], None],
) -> None:
    from hephaestus_django.runtime import backends

    instance_id = Order.start({})
    settle()
    BROKEN_REFUNDS.add(instance_id)
    Order.cancel(instance_id, compensate=True)
    settle()
    storage = backends.storage("default")
    assert storage.get(instance_id).waiting_steps[Charge].attempt == 2

    fire_timers(instance_id)
    settle()

    failed = storage.get(instance_id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.step is Charge
    assert failed.compensating
    BROKEN_REFUNDS.discard(instance_id)
    Order.retry(instance_id)
    settle()
    assert storage.get(instance_id).status is Status.CANCELLED
    assert EFFECTS[instance_id] == ["reserve", "notify", "charge", "refund", "release"]


def test_compensate_on_failure_ends_failed_with_the_original_error(
    settle: Callable[[], None],
) -> None:
    instance_id = UndoneOrder.start({"decline": True})
    settle()

    instance = DjangoStorage().get(instance_id)
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert (instance.error.step, instance.error.message) == (Charge, "card declined")
    assert EFFECTS[instance_id] == ["reserve", "notify", "release"]
    assert [entry.step for entry in instance.execution_history if entry.compensating] == [
        Charge,
        Reserve,
    ]


def test_a_row_that_says_cancelled_is_refused_by_the_old_check_constraint_no_more() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conname = 'workflow_instances_status_valid'"
        )
        (definition,) = cursor.fetchone()
    assert "'cancelled'" in definition
