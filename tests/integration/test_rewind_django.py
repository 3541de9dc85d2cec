"""Rewind, fork and compensating a failed instance on PostgreSQL: both runners, the stored row."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connections

from hephaestus_django import (
    InstanceNotCompensableError,
    InstanceNotWaitingError,
    RewindError,
    Status,
)
from hephaestus_django.core.rewind import FORKED_FROM_KEY, REWOUND
from hephaestus_django.models import WorkflowInstance
from hephaestus_django.storage import DjangoStorage
from tests.rewinds import BROKEN, TRAIL, Bill, Fetch, Pipeline, Price, Ship
from tests.sagas import EFFECTS, Order
from tests.support.runners import RUNNERS, Settle, runner_over

pytestmark = pytest.mark.django_db(transaction=True)  # queued jobs are enqueued on commit


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    TRAIL.clear()
    BROKEN.clear()
    EFFECTS.clear()
    yield
    TRAIL.clear()
    BROKEN.clear()
    EFFECTS.clear()


@pytest.fixture(params=RUNNERS)
def settle(request: pytest.FixtureRequest) -> Iterator[Settle]:
    with runner_over(DjangoStorage(), request.param) as settle:
        yield settle


def test_a_failed_instance_rewound_after_the_fix_completes_and_is_stored(settle: Settle) -> None:
    BROKEN.add("price")
    instance_id = Pipeline.start({})
    settle()
    assert WorkflowInstance.objects.get(id=instance_id).status == "failed"
    BROKEN.clear()

    Pipeline.rewind(instance_id, to=Price)
    settle()
    Pipeline.resume(instance_id, "shipped")
    settle()

    stored = Pipeline.get(instance_id)
    assert stored.status is Status.COMPLETED
    assert WorkflowInstance.objects.get(id=instance_id).status == "completed"
    assert TRAIL[stored.id] == ["fetch", "price", "price", "bill"]
    rewinds = [entry for entry in stored.execution_history if entry.event == REWOUND]
    assert [(entry.step, entry.context_updates) for entry in rewinds] == [
        (Price, {"forgotten": [Price.path()]})
    ]
    assert [entry.step for entry in stored.execution_history if entry.error is not None] == []


def test_a_rewind_with_compensations_is_stored_between_them(settle: Settle) -> None:
    instance_id = Pipeline.start({})
    settle()

    Pipeline.rewind(instance_id, to=Fetch, compensate=True)
    settle()

    stored = Pipeline.get(instance_id)
    assert stored.status is Status.WAITING
    assert stored.waiting_steps.keys() == {Ship}
    assert TRAIL[stored.id][3:] == ["undo bill", "undo fetch", "fetch", "price", "bill"]


def test_a_refused_rewind_leaves_the_row_as_it_was(settle: Settle) -> None:
    BROKEN.add("price")
    instance_id = Pipeline.start({})
    settle()
    before = WorkflowInstance.objects.get(id=instance_id)

    with pytest.raises(RewindError, match="never reached"):
        Pipeline.rewind(instance_id, to=Bill)

    after = WorkflowInstance.objects.get(id=instance_id)
    assert (after.revision, after.status, after.state) == (
        before.revision,
        before.status,
        before.state,
    )


def test_a_failed_order_is_compensated_and_stays_failed(settle: Settle) -> None:
    instance_id = Order.start({"decline": True})
    settle()

    Order.compensate(instance_id)
    settle()

    assert WorkflowInstance.objects.get(id=instance_id).status == "failed"
    stored = Order.get(instance_id)
    assert EFFECTS[stored.id] == ["reserve", "notify", "release"]
    with pytest.raises(InstanceNotCompensableError):
        Order.compensate(instance_id)


def test_a_fork_is_a_new_row_linked_to_its_original(settle: Settle) -> None:
    BROKEN.add("price")
    instance_id = Pipeline.start({})
    settle()
    before = WorkflowInstance.objects.get(id=instance_id)
    BROKEN.clear()

    forked = Pipeline.fork(instance_id, at=Price, context={"factor": 2})
    settle()

    row = WorkflowInstance.objects.get(id=forked.id)
    assert row.status == "waiting"
    copy = Pipeline.get(forked.id)
    assert copy.runtime_metadata[FORKED_FROM_KEY]["id"] == str(instance_id)
    assert copy.context.result(Price) == {"runs": 1, "factor": 2}
    original = WorkflowInstance.objects.get(id=instance_id)
    assert (original.revision, original.status) == (before.revision, before.status)


def test_a_rewind_racing_a_resume_is_applied_before_or_after_it(settle: Settle) -> None:
    """Both take the row lock: the instance ends as one order or the other would leave it,
    never a mix (a resume refused because the rewind made the step run again is one order)."""
    instance_id = Pipeline.start({})
    settle()
    barrier = threading.Barrier(2)
    refused: list[BaseException] = []

    def resume() -> None:
        barrier.wait()
        try:
            Pipeline.resume(instance_id, "shipped")
        except InstanceNotWaitingError as error:
            refused.append(error)
        finally:
            connections.close_all()

    def rewind() -> None:
        barrier.wait()
        try:
            Pipeline.rewind(instance_id, to=Bill)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=resume), threading.Thread(target=rewind)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    settle()

    stored = Pipeline.get(instance_id)
    bills = TRAIL[stored.id].count("bill")
    assert bills == 2  # the rewind ran Bill again, whichever came first
    completions = [e.step for e in stored.execution_history if e.event != REWOUND]
    assert completions.count(Bill) == 1
    if stored.status is Status.COMPLETED:  # the rewind first, then the resume
        assert completions.count(Ship) == 1
    else:  # the resume first (or refused while Bill ran again): waiting again
        assert stored.status is Status.WAITING
        assert stored.waiting_steps.keys() == {Ship}
        assert Ship not in stored.completed_steps
    assert len(refused) <= 1
