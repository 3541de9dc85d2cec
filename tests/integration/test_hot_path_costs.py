"""What the paths a web application uses most cost the database, pinned (issue 25).

Statements and commits per ``start`` and ``resume`` on both runners, and per queued step's job,
on PostgreSQL, counted as Django sends them (:mod:`tests.support.queries`). A change that adds
one fails here: it must then say why in the test, and in the Durability page's table of what
each promise costs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Concurrency,
    Context,
    Done,
    Event,
    Instance,
    Status,
    Step,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.postgres import slots
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    LocalRunner,
    QueuedRunner,
    configure,
    queued,
    workflow_pauses,
)
from hephaestus_django.runtime.workflow_pauses import holds
from hephaestus_django.storage import DjangoStorage
from tests.dispatchers.harness_procrastinate import clear_jobs, queued_jobs
from tests.support.queries import cost

pytestmark = pytest.mark.django_db(transaction=True)

INSTANCES = "workflow_instances"


class AwaitApproval(WaitForEvent):
    events = ("approved",)


class Record(Step):
    """A step with effects between the two waits."""

    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("ok", updates={"recorded": True})


class AwaitShipment(WaitForEvent):
    events = ("shipped",)


class Approval(Workflow):
    """Waits at once; a resume runs one step with effects to the next wait."""

    start = AwaitApproval
    transitions = {
        AwaitApproval: {"approved": Record},
        Record: {"ok": AwaitShipment},
        AwaitShipment: {"shipped": Done},
    }


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner = LocalRunner(lease=timedelta(seconds=30))
    storage = DjangoStorage(using="default")
    configure(storages={"default": storage}, runner=runner)
    storage.now()  # the clock's reading (at most one a minute) is no cost of a start
    # Nor the workflow holds' (pause_all), read at most once a second: kept for the test here,
    # so that a loaded machine's pause between this line and the start cannot expire it.
    monkeypatch.setattr(workflow_pauses, "CACHE_SECONDS", 3600.0)
    holds(storage)
    yield
    configure()


@pytest.fixture
def dispatcher(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    storage = DjangoStorage(using="default")
    configure(storages={"default": storage}, runner=runner)
    storage.now()  # the clock's reading (at most one a minute) is no cost of a start
    # Nor the workflow holds' (pause_all), read at most once a second: kept for the test here,
    # so that a loaded machine's pause between this line and the start cannot expire it.
    monkeypatch.setattr(workflow_pauses, "CACHE_SECONDS", 3600.0)
    holds(storage)
    yield dispatcher
    runner.close()
    configure()


def test_local_start_then_wait(local: None) -> None:
    with cost() as spent:
        instance_id = Approval.start({})
    assert Approval.get(instance_id).status is Status.WAITING
    # One commit: the wait is settled before the first write, which takes no lease (nothing
    # will run in this process).
    assert (spent.statements, spent.commits) == ([f"INSERT {INSTANCES}"], 1)
    assert Approval.get(instance_id).lease_owner is None


def test_local_resume_through_a_step_to_the_next_wait(local: None) -> None:
    instance_id = Approval.start({})
    with cost() as spent:
        Approval.resume(instance_id, "approved")
    after = Approval.get(instance_id)
    assert after.waiting_steps.keys() == {AwaitShipment}
    # Two commits, as the Durability promises allow: the event under the row lock with the
    # lease (Record has effects: it runs only once stored active), then Record's result with
    # the wait it reaches settled in the same write.
    assert (spent.statements, spent.commits) == (
        [f"SELECT {INSTANCES}", f"UPDATE {INSTANCES}", f"UPDATE {INSTANCES}"],
        2,
    )
    assert after.lease_owner is None


def test_queued_start_and_resume(dispatcher: InMemoryDispatcher) -> None:
    with cost() as spent:
        instance_id = Approval.start({})
    assert (spent.statements, spent.commits) == ([f"INSERT {INSTANCES}"], 1)
    assert dispatcher.jobs == []  # the wait is settled in the start's write: no job
    with cost() as spent:
        Approval.resume(instance_id, "approved")
    assert (spent.statements, spent.commits) == ([f"SELECT {INSTANCES}", f"UPDATE {INSTANCES}"], 1)


def test_a_queued_step_costs_its_mark_and_its_result(
    dispatcher: InMemoryDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark (also the job's read, a HOT update) and the result's write with what it makes
    runnable; the step worker's throttled sign of life is left out."""
    monkeypatch.setattr(queued, "_observers", [])
    instance_id = Approval.start({})
    Approval.resume(instance_id, "approved")
    [job] = dispatcher.take()
    with cost() as spent:
        dispatcher.run(job)
    assert Approval.get(instance_id).waiting_steps.keys() == {AwaitShipment}  # in that write
    assert (spent.statements, spent.commits) == ([f"UPDATE {INSTANCES}"] * 2, 2)


@pytest.fixture
def procrastinate(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from hephaestus_django.queues.procrastinate import ProcrastinateDispatcher

    runner = QueuedRunner(dispatcher=ProcrastinateDispatcher(), lease=timedelta(seconds=30))
    storage = DjangoStorage(using="default")
    configure(storages={"default": storage}, runner=runner)
    storage.now()  # the clock's reading (at most one a minute) is no cost of a start
    # The workflows held (at most one read a second per process), read before, as the clock.
    monkeypatch.setattr(workflow_pauses, "CACHE_SECONDS", 3600.0)
    holds(storage)
    Approval.resume(Approval.start({}), "approved")  # the dispatcher's one-time set-up check
    clear_jobs()
    yield
    runner.close()
    configure()
    clear_jobs()  # procrastinate's tables are not flushed: later tests read them


def test_queued_start_and_resume_with_the_enqueue_in_the_transaction(procrastinate: None) -> None:
    """With a job engine in the database (procrastinate), the step's job is deferred in the
    statement that records the event, after the row lock: the resume is two statements and
    one commit, as the hand-written floor's (bench/hot_paths.py): ``SELECT ... FOR UPDATE``,
    then the ``UPDATE`` in a ``WITH`` whose ``SELECT`` calls ``procrastinate_defer_jobs_v1``
    (``DjangoStorage.update_with_jobs``)."""
    with cost() as spent:
        instance_id = Approval.start({})
    assert (spent.statements, spent.commits) == ([f"INSERT {INSTANCES}"], 1)  # no job
    with cost() as spent:
        Approval.resume(instance_id, "approved")
    assert (spent.statements, spent.commits) == (
        [f"SELECT {INSTANCES}", f"WITH UPDATE {INSTANCES}"],
        1,
    )


class Shipment(Workflow):
    """Runs a step with effects at once."""

    start = Record
    transitions = {Record: {"ok": Done}}


def test_a_queued_start_inserts_the_instance_with_its_first_job(procrastinate: None) -> None:
    """A start whose first step runs on a worker: the insert and, in its statement, the step's
    job: one statement committed by itself, as the floor's insert."""
    with cost() as spent:
        instance_id = Shipment.start({})
    assert (spent.statements, spent.commits) == ([f"WITH INSERT {INSTANCES}"], 1)
    assert [(job.instance_id, job.step) for job in queued_jobs()] == [(instance_id, Record.path())]


def test_a_keyed_queued_start_finds_a_taken_key_in_its_transaction(procrastinate: None) -> None:
    """With a business key the insert may find the key taken (statements of its own, no job
    then): the insert and the defer, in one transaction."""
    with cost() as spent:
        instance_id = Shipment.start({}, key="order-1")
    assert (spent.statements, spent.commits) == ([f"INSERT {INSTANCES}", "SELECT"], 1)
    assert [(job.instance_id, job.step) for job in queued_jobs()] == [(instance_id, Record.path())]


# --- a step with a concurrency limit (issue 27) ------------------------------------------------


class Throttled(Step):
    events = ("ok",)
    concurrency = Concurrency(1_000, name="hot-path-limit")

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        return "ok"


class ThrottledFlow(Workflow):
    start_step = Throttled
    transitions = {Throttled: {"ok": Done}}


LOCKED_SLOTS = "SELECT hephaestus_slots"  # the limit's lock, then the operation: one query


def test_a_limited_step_on_the_local_runner(local: None) -> None:
    """The start's insert; the admission (the limit's lock and the slot taken, sent as one
    query in a transaction of their own); then the result's write with the slot's release and
    the next waiter's admission, in one transaction. Without a limit: the insert and the
    result (2 statements, 2 commits)."""
    with cost() as spent:
        instance_id = ThrottledFlow.start({})
    assert ThrottledFlow.get(instance_id).status is Status.COMPLETED
    assert spent.statements == [
        f"INSERT {INSTANCES}",
        LOCKED_SLOTS,
        f"UPDATE {INSTANCES}",
        LOCKED_SLOTS,
    ]
    assert spent.commits == 3


def test_a_limited_queued_step(
    dispatcher: InMemoryDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admission when its job is enqueued (in the start's), asked again when the job runs
    (the instance's read, then the slot found held), then the mark, and the result's write with
    the release in one transaction. Without a limit: the mark and the result."""
    monkeypatch.setattr(queued, "_observers", [])
    with cost() as spent:
        instance_id = ThrottledFlow.start({})
    assert spent.statements == [f"INSERT {INSTANCES}", LOCKED_SLOTS]
    [job] = dispatcher.take()
    with cost() as spent:
        dispatcher.run(job)
    assert ThrottledFlow.get(instance_id).status is Status.COMPLETED
    assert spent.statements == [
        f"SELECT {INSTANCES}",
        LOCKED_SLOTS,
        f"UPDATE {INSTANCES}",
        f"UPDATE {INSTANCES}",
        LOCKED_SLOTS,
    ]
    assert spent.commits == 4


def test_where_parameters_are_bound_on_the_server_the_lock_is_a_statement_of_its_own(
    local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection with ``server_side_binding`` takes one statement per query (``fetch_last``
    then sends nothing): the lock and the operation go as two, in one transaction."""
    monkeypatch.setattr(slots, "fetch_last", lambda connection, sql, params: None)
    with cost() as spent:
        instance_id = ThrottledFlow.start({})
    assert ThrottledFlow.get(instance_id).status is Status.COMPLETED
    assert spent.statements == [
        f"INSERT {INSTANCES}",
        "SELECT",  # the lock
        "WITH SELECT hephaestus_slots",  # the admission
        f"UPDATE {INSTANCES}",
        "SELECT",
        "WITH DELETE hephaestus_slots",
    ]
