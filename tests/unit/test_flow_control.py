"""Concurrency limits and priorities on both runners, on InMemoryStorage (no database)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from hephaestus_django import (
    Concurrency,
    ConcurrencyKeyError,
    InvalidInstanceError,
    Status,
    Step,
    StepDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.flow import SlotRequest
from hephaestus_django.core.instance import evolve
from hephaestus_django.core.naming import dotted_path
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    configure,
)
from tests.support.flow_control import (
    GATE,
    Limited,
    LimitedFlow,
    Ordered,
    OrderedFlow,
    PerTenantFlow,
)

# --- definition checks ------------------------------------------------------------------------
from tests.support.steps import GraphOnly


@pytest.mark.parametrize(
    ("declared", "says"),
    [
        (Concurrency(0), "limit must be an int of at least 1, not 0"),
        (Concurrency(-3), "at least 1"),
        (Concurrency(True), "not True"),  # a bool is not a number of slots
        (Concurrency(2, key="tenant"), "key must be a function of the context"),  # type: ignore[arg-type]
        (Concurrency(2, name=""), "name must be a non-empty string"),
        (5, "concurrency must be a Concurrency(...), not 5"),
    ],
)
def test_a_malformed_limit_is_refused_naming_the_step(declared: object, says: str) -> None:
    with pytest.raises(StepDefinitionError, match="BadLimit") as caught:

        class BadLimit(Step):
            events = ("ok",)
            concurrency = declared  # type: ignore[assignment]

    assert caught.value.rule == "malformed-concurrency"
    assert (
        caught.value.step == "test_a_malformed_limit_is_refused_naming_the_step.<locals>.BadLimit"
    )
    assert says in str(caught.value)


def test_a_name_shared_with_another_number_is_refused() -> None:
    class ChargeOne(GraphOnly):
        events = ("ok",)
        concurrency = Concurrency(5, name="unit-gateway")

    class ChargeTwo(GraphOnly):  # the same number: one limit for both
        events = ("ok",)
        concurrency = Concurrency(5, name="unit-gateway")

    with pytest.raises(StepDefinitionError, match="ChargeThree") as caught:

        class ChargeThree(GraphOnly):
            events = ("ok",)
            concurrency = Concurrency(6, name="unit-gateway")

    assert caught.value.rule == "conflicting-concurrency"
    assert "ChargeOne" in str(caught.value)


# --- LocalRunner ---------------------------------------------------------------------------


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


@pytest.fixture
def local(storage: InMemoryStorage) -> Iterator[LocalRunner]:
    GATE.reset()
    runner = LocalRunner(lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    GATE.opened.set()
    runner.close()
    configure()


def settle(condition: Callable[[], bool]) -> None:
    """Wait (a minute at most) until ``condition()``: the callers parked have returned and the
    holders' steps have entered the gate, which under load may come in either order."""
    deadline = time.monotonic() + 60
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def start_in_threads(count: int) -> tuple[list[threading.Thread], list[UUID]]:
    started: list[UUID] = []
    threads = [
        threading.Thread(target=lambda: started.append(LimitedFlow.start({}))) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads, started


def test_local_runner_runs_at_most_the_limit_and_parks_the_rest(
    local: LocalRunner, storage: InMemoryStorage
) -> None:
    threads, started = start_in_threads(5)
    # Three callers return at once: their instances wait in line, parked, for the worker.
    settle(lambda: len(started) == 3 and GATE.running == 2)
    assert GATE.running == 2
    waiting = [LimitedFlow.get(instance_id) for instance_id in started]
    assert all(instance.status is Status.RUNNING for instance in waiting)
    assert all(str(instance.lease_owner).startswith("parked:") for instance in waiting)
    assert sorted(place.position for i in started for place in storage.places(i)) == [1, 2, 3]
    [use] = storage.limits()
    assert (use.holding, use.waiting, use.limit) == (2, 3, 2)
    GATE.opened.set()
    for thread in threads:
        thread.join()
    # The two that ran released their slots and woke the next two; the worker runs them.
    while any(LimitedFlow.get(i).status is not Status.COMPLETED for i in started):
        local.work(storage=storage)
    assert GATE.most == 2
    assert GATE.done == 5
    assert all(use.holding == 0 for use in storage.limits())


def test_a_parked_instance_is_not_claimed_before_a_slot_is_freed(
    local: LocalRunner, storage: InMemoryStorage
) -> None:
    threads, started = start_in_threads(3)
    settle(lambda: len(started) == 1 and GATE.running == 2)
    parked = started[0]  # the one whose caller returned while the other two run
    assert local.work(storage=storage) == []  # nothing to do: no spinning
    GATE.opened.set()
    for thread in threads:
        thread.join()
    assert [instance.id for instance in local.work(storage=storage)] == [parked]
    assert LimitedFlow.get(parked).status is Status.COMPLETED


def test_a_key_function_that_fails_fails_its_instance_only(local: LocalRunner) -> None:
    bad = PerTenantFlow.start({"tenant": 42})
    missing = PerTenantFlow.start({})
    good = PerTenantFlow.start({"tenant": "acme"})
    for instance_id, says in [(bad, "returned 42"), (missing, "raised KeyError")]:
        instance = PerTenantFlow.get(instance_id)
        assert instance.status is Status.FAILED
        assert instance.error is not None
        assert instance.error.error_type.endswith(ConcurrencyKeyError.__name__)
        assert "PerTenant" in instance.error.message
        assert says in instance.error.message
    assert PerTenantFlow.get(good).status is Status.COMPLETED


def test_a_higher_priority_is_admitted_first_then_first_come(
    local: LocalRunner, storage: InMemoryStorage
) -> None:
    Ordered.started.clear()
    # The "ordered" limit's one slot, held by another instance: the starts below wait.
    request, lease = SlotRequest("ordered", "", 1), timedelta(minutes=5)
    occupant = engine.start(engine.new_instance(LimitedFlow, {}))
    # Run by another process meanwhile (its live lease): the worker leaves it alone.
    occupant = evolve(occupant, lease_owner="elsewhere", lease_expires_at=storage.now() + lease)
    storage.put(occupant)
    assert storage.admit(occupant.id, "tests.Occupant", request, priority=0, lease=lease)
    ids = [
        OrderedFlow.start({"name": "low-1"}),
        OrderedFlow.start({"name": "high"}, priority=10),
        OrderedFlow.start({"name": "low-2"}),
        OrderedFlow.start({"name": "urgent"}, priority=100),
    ]
    assert Ordered.started == []
    assert OrderedFlow.get(ids[1]).runtime_metadata == {"hephaestus_priority": 10}
    storage.release(occupant.id, "tests.Occupant", request, lease=lease)
    while any(OrderedFlow.get(i).status is not Status.COMPLETED for i in ids):
        assert local.work(storage=storage)
    assert Ordered.started == ["urgent", "high", "low-1", "low-2"]


@pytest.mark.parametrize("priority", [1.5, "high", True, 2**40])
def test_a_priority_that_is_not_a_small_int_is_refused(local: LocalRunner, priority: object):
    with pytest.raises(InvalidInstanceError, match="priority must be an int"):
        LimitedFlow.start({}, priority=priority)  # type: ignore[arg-type]
    assert LimitedFlow.list() == []


# --- QueuedRunner --------------------------------------------------------------------------


@pytest.fixture
def dispatcher() -> InMemoryDispatcher:
    return InMemoryDispatcher()


@pytest.fixture
def queued(storage: InMemoryStorage, dispatcher: InMemoryDispatcher) -> Iterator[QueuedRunner]:
    GATE.reset()
    GATE.opened.set()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    runner.close()
    configure()


def limited_jobs(dispatcher: InMemoryDispatcher) -> list[StepJob]:
    return [job for job in dispatcher.jobs if isinstance(job, StepJob)]


def test_queued_runner_enqueues_no_job_that_would_only_wait(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage
) -> None:
    ids = [LimitedFlow.start({}) for _ in range(5)]
    assert len(limited_jobs(dispatcher)) == 2  # the limit: the others wait in line, jobless
    assert [use.waiting for use in storage.limits()] == [3]
    # Each job's end releases its slot and enqueues the next waiter's job in its place.
    outstanding = dispatcher.take()
    while outstanding:
        dispatcher.run(outstanding.pop(0))
        outstanding += dispatcher.take()
        assert len(outstanding) <= 2
    assert all(LimitedFlow.get(i).status is Status.COMPLETED for i in ids)
    assert GATE.done == 5
    assert [use.holding for use in storage.limits()] in ([], [0])


def test_queued_runner_records_a_failing_key_function_on_its_instance(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    bad = PerTenantFlow.start({"tenant": None})
    good = PerTenantFlow.start({"tenant": "acme"})
    dispatcher.drain()
    failed = PerTenantFlow.get(bad)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert "returned None" in failed.error.message
    assert PerTenantFlow.get(good).status is Status.COMPLETED


def test_queued_limits_hold_per_key(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage
) -> None:
    for tenant in ["acme", "acme", "globex", "acme", "globex", "initech"]:
        PerTenantFlow.start({"tenant": tenant})
    assert len(limited_jobs(dispatcher)) == 3  # one per tenant
    assert {use.key: use.waiting for use in storage.limits()} == {
        "acme": 2,
        "globex": 1,
        "initech": 0,
    }
    dispatcher.drain()
    assert all(i.status is Status.COMPLETED for i in PerTenantFlow.list())
    assert Limited.concurrency is not None


def test_queued_jobs_carry_their_instances_priority(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    LimitedFlow.start({}, priority=9)
    LimitedFlow.start({})
    assert [job.priority for job in limited_jobs(dispatcher)] == [9, 0]


# --- a cancelled or deleted holder frees its slots at once ------------------------------------


def test_a_cancelled_holder_frees_its_slot_at_once_and_its_late_result_takes_none(
    local: LocalRunner, storage: InMemoryStorage
) -> None:
    threads, started = start_in_threads(3)
    settle(lambda: len(started) == 1 and GATE.running == 2)
    [parked] = started
    holder = next(i.id for i in LimitedFlow.list() if i.id != parked)
    assert GATE.running == 2
    LimitedFlow.cancel(holder)
    # In the cancel's transaction: the parked waiter holds the freed slot, and is woken.
    [use] = storage.limits()
    assert (use.holding, use.waiting) == (2, 0)
    assert storage.places(parked) == []
    woken = LimitedFlow.get(parked)
    assert woken.lease_expires_at is not None
    assert woken.lease_expires_at <= storage.now()
    GATE.opened.set()  # the cancelled holder's step ends: its result is refused
    for thread in threads:
        thread.join()
    [use] = storage.limits()
    assert use.holding == 1  # the woken waiter's slot: not taken back, not freed twice
    assert [i.id for i in local.work(storage=storage)] == [parked]
    assert LimitedFlow.get(parked).status is Status.COMPLETED
    assert LimitedFlow.get(holder).status is Status.CANCELLED
    assert GATE.most == 2
    assert GATE.done == 3
    assert all(use.holding == 0 for use in storage.limits())


def test_queued_cancel_enqueues_the_next_waiters_job_with_it(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage
) -> None:
    first, second, third = (LimitedFlow.start({}) for _ in range(3))
    assert [job.instance_id for job in limited_jobs(dispatcher)] == [first, second]
    LimitedFlow.cancel(first)
    assert [job.instance_id for job in limited_jobs(dispatcher)] == [first, second, third]
    assert [(use.holding, use.waiting) for use in storage.limits()] == [(2, 0)]
    dispatcher.drain()  # the cancelled one's job finds it cancelled: it takes no slot
    assert LimitedFlow.get(first).status is Status.CANCELLED
    assert {LimitedFlow.get(i).status for i in (second, third)} == {Status.COMPLETED}
    assert GATE.done == 2
    assert all(use.holding == 0 for use in storage.limits())


@pytest.mark.parametrize("runner_kind", ["local", "queued"])
def test_a_deleted_holder_frees_its_slot_for_the_next_in_line(
    runner_kind: str, storage: InMemoryStorage, dispatcher: InMemoryDispatcher
) -> None:
    GATE.reset()
    GATE.opened.set()
    runner: LocalRunner | QueuedRunner
    if runner_kind == "local":
        runner = LocalRunner(lease=timedelta(seconds=30))
    else:
        runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    try:
        request = SlotRequest(dotted_path(Limited), "", 2)
        for _ in range(2):  # two holders whose steps run elsewhere
            holder = engine.start(engine.new_instance(LimitedFlow, {}))
            storage.put(holder)
            storage.admit(holder.id, dotted_path(Limited), request, priority=0, lease=runner.lease)
        waiter = LimitedFlow.start({})  # over the limit: waits in line
        assert [(use.holding, use.waiting) for use in storage.limits()] == [(2, 1)]
        runner.delete(holder.id, storage=storage)
        assert [(use.holding, use.waiting) for use in storage.limits()] == [(2, 0)]
        if runner_kind == "queued":
            assert [job.instance_id for job in limited_jobs(dispatcher)] == [waiter]
            dispatcher.drain()
        else:
            runner.work(storage=storage)
        assert LimitedFlow.get(waiter).status is Status.COMPLETED
    finally:
        runner.close()
        configure()
