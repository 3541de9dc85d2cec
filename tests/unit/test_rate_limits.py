"""Rate limits (``RateLimit``) on steps and on workflows' starts, on both runners, on
InMemoryStorage with a clock moved by hand (no database, no waiting)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Concurrency,
    Context,
    Done,
    Instance,
    RateLimit,
    Retry,
    Status,
    Step,
    StepDefinitionError,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core.errors import InstanceDeletedError
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    configure,
)
from tests.support.rate_limits import (
    Begin,
    Bursty,
    Called,
    CalledFlow,
    PerTenantCalls,
    SelfEnding,
    SelfEndingFlow,
)
from tests.support.steps import GraphOnly
from tests.timers import Clock

SECOND = timedelta(seconds=1)

# --- definition checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "says"),
    [
        (RateLimit(0, per=SECOND), "limit must be an int of at least 1, not 0"),
        (RateLimit(True, per=SECOND), "not True"),
        (RateLimit(5, per=timedelta(0)), "per must be a positive timedelta"),
        (RateLimit(5, per=-SECOND), "per must be a positive timedelta"),
        (RateLimit(5, per=60), "per must be a positive timedelta, not 60"),  # type: ignore[arg-type]
        (RateLimit(5, per=SECOND, key="tenant"), "key must be a function"),  # type: ignore[arg-type]
        (RateLimit(5, per=SECOND, name=" "), "name must be a non-empty string"),
        (Concurrency(5), "rate_limit must be a RateLimit(...)"),
    ],
)
def test_a_malformed_rate_limit_is_refused_naming_the_step(declared: object, says: str) -> None:
    with pytest.raises(StepDefinitionError, match="BadRate") as caught:

        class BadRate(GraphOnly):
            events = ("ok",)
            rate_limit = declared  # type: ignore[assignment]

    assert caught.value.rule == "malformed-rate-limit"
    assert caught.value.step is not None
    assert caught.value.step.endswith("BadRate")
    assert says in str(caught.value)


def test_a_rate_limit_name_shared_with_other_numbers_is_refused() -> None:
    class SendOne(GraphOnly):
        events = ("ok",)
        rate_limit = RateLimit(100, per=timedelta(minutes=1), name="unit-mailer")

    class SendTwo(GraphOnly):  # the same numbers: one limit for both
        events = ("ok",)
        rate_limit = RateLimit(100, per=timedelta(minutes=1), name="unit-mailer")

    with pytest.raises(StepDefinitionError, match="SendThree") as caught:

        class SendThree(GraphOnly):
            events = ("ok",)
            rate_limit = RateLimit(100, per=timedelta(seconds=1), name="unit-mailer")

    assert caught.value.rule == "conflicting-rate-limit"
    assert "SendOne" in str(caught.value)

    class Mailer(GraphOnly):  # a concurrency limit of the same name is another limit
        events = ("ok",)
        concurrency = Concurrency(3, name="unit-mailer")


def test_a_step_declares_a_concurrency_or_a_rate_limit_not_both() -> None:
    with pytest.raises(StepDefinitionError, match="Both") as caught:

        class Both(GraphOnly):
            events = ("ok",)
            concurrency = Concurrency(2)
            rate_limit = RateLimit(5, per=SECOND)

    assert caught.value.rule == "malformed-rate-limit"
    assert "not both" in str(caught.value)


def test_a_malformed_workflow_rate_limit_is_refused_naming_the_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError, match="Flood") as caught:

        class Flood(Workflow):
            start_step = Begin
            transitions = {Begin: {"ok": Done}}
            rate_limit = RateLimit(10, per=timedelta(seconds=-1))

    assert caught.value.rule == "malformed-rate-limit"
    assert "per must be a positive timedelta" in str(caught.value)

    with pytest.raises(WorkflowDefinitionError, match="start step Called") as caught:

        class Limited(Workflow):  # its start step is limited itself: which limit would apply?
            start_step = Called
            transitions = {Called: {"ok": Done}}
            rate_limit = RateLimit(10, per=SECOND)

    assert caught.value.rule == "malformed-rate-limit"


# --- both runners ---------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def storage(clock: Clock) -> InMemoryStorage:
    Called.ran.clear()
    Begin.ran.clear()
    return InMemoryStorage(clock=clock)


@pytest.fixture
def local(storage: InMemoryStorage) -> Iterator[LocalRunner]:
    runner = LocalRunner(lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    runner.close()
    configure()


@pytest.fixture
def dispatcher() -> InMemoryDispatcher:
    return InMemoryDispatcher()


@pytest.fixture
def queued(storage: InMemoryStorage, dispatcher: InMemoryDispatcher) -> Iterator[QueuedRunner]:
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    runner.close()
    configure()


def statuses(workflow: type[Workflow], ids: list[object]) -> list[Status]:
    return [workflow.get(i).status for i in ids]  # type: ignore[arg-type]


def test_local_runner_runs_the_limit_per_window_and_the_worker_the_rest(
    local: LocalRunner, storage: InMemoryStorage, clock: Clock
) -> None:
    ids = [CalledFlow.start({"name": str(n)}) for n in range(7)]
    assert Called.ran == ["0", "1", "2"]  # the window's 3; the others wait, the callers return
    assert statuses(CalledFlow, ids).count(Status.COMPLETED) == 3
    [use] = storage.limits()
    assert (use.name, use.holding, use.waiting, use.limit) == (
        "rate:tests.support.rate_limits.Called",
        3,
        4,
        3,
    )
    local.work(storage=storage)  # the window has not moved on: nothing more runs
    assert len(Called.ran) == 3
    clock.advance(seconds=1)
    local.work(storage=storage)  # the spent slots lapse: the next 3 in line are admitted
    local.work(storage=storage)  # and run
    assert sorted(Called.ran[3:]) == ["3", "4", "5"]  # in the order the worker claims them
    clock.advance(seconds=1)
    local.work(storage=storage)
    local.work(storage=storage)
    assert Called.ran[-1] == "6"
    assert all(status is Status.COMPLETED for status in statuses(CalledFlow, ids))


def test_queued_runner_enqueues_no_job_over_the_rate_and_the_sweep_the_rest(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage, clock: Clock
) -> None:
    ids = [CalledFlow.start({"name": str(n)}, priority=n % 2) for n in range(5)]
    assert len([job for job in dispatcher.jobs if isinstance(job, StepJob)]) == 3
    dispatcher.drain()
    assert sorted(Called.ran) == ["0", "1", "2"]
    queued.work(storage=storage)
    assert dispatcher.take() == []  # still the same window
    clock.advance(seconds=1)
    queued.work(storage=storage)
    dispatcher.drain()
    assert sorted(Called.ran[3:]) == ["3", "4"]
    assert all(status is Status.COMPLETED for status in statuses(CalledFlow, ids))


def test_waiters_are_admitted_by_priority_then_age(
    local: LocalRunner, storage: InMemoryStorage, clock: Clock
) -> None:
    for n in range(3):
        CalledFlow.start({"name": f"first{n}"})
    CalledFlow.start({"name": "old"})
    CalledFlow.start({"name": "urgent"}, priority=5)
    CalledFlow.start({"name": "new"})
    last = CalledFlow.start({"name": "newest"})
    clock.advance(seconds=1)
    local.work(storage=storage)
    local.work(storage=storage)
    assert sorted(Called.ran[3:]) == ["new", "old", "urgent"]
    assert [place.position for place in storage.places(last)] == [1]


def test_a_workflow_rate_limit_bounds_its_starts(
    local: LocalRunner, storage: InMemoryStorage, clock: Clock
) -> None:
    ids = [Bursty.start({"name": str(n)}) for n in range(5)]
    assert Begin.ran == ["0", "1"]
    waiting = Bursty.get(ids[2])
    assert waiting.status is Status.RUNNING  # stored, in line: the caller was not blocked
    assert [place.position for place in storage.places(ids[2])] == [1]
    clock.advance(seconds=1)
    local.work(storage=storage)
    local.work(storage=storage)
    assert sorted(Begin.ran) == ["0", "1", "2", "3"]
    clock.advance(seconds=1)
    local.work(storage=storage)
    local.work(storage=storage)
    assert all(status is Status.COMPLETED for status in statuses(Bursty, ids))


def test_a_workflow_rate_limit_on_the_queued_runner(
    queued: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage, clock: Clock
) -> None:
    ids = [Bursty.start({"name": str(n)}) for n in range(3)]
    dispatcher.drain()
    assert sorted(Begin.ran) == ["0", "1"]
    clock.advance(seconds=1)
    queued.work(storage=storage)
    dispatcher.drain()
    assert all(status is Status.COMPLETED for status in statuses(Bursty, ids))


@pytest.mark.parametrize("runner", ["local", "queued"])
def test_a_key_function_that_fails_is_recorded_on_its_instance_only(
    runner: str, request: pytest.FixtureRequest, storage: InMemoryStorage
) -> None:
    request.getfixturevalue(runner)
    bad = PerTenantCalls.start({"tenant": 42})
    missing = PerTenantCalls.start({})
    good = PerTenantCalls.start({"tenant": "acme"})
    if runner == "queued":
        request.getfixturevalue("dispatcher").drain()
    failed = PerTenantCalls.get(bad)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert "the rate limit key function returned 42" in failed.error.message
    assert failed.error.error_type.endswith("ConcurrencyKeyError")
    raised = PerTenantCalls.get(missing)
    assert raised.status is Status.FAILED
    assert raised.error is not None
    assert "raised KeyError" in raised.error.message
    assert PerTenantCalls.get(good).status is Status.COMPLETED


def test_keys_are_limited_apart(local: LocalRunner) -> None:
    acme = [PerTenantCalls.start({"tenant": "acme"}) for _ in range(2)]
    globex = PerTenantCalls.start({"tenant": "globex"})
    assert statuses(PerTenantCalls, [*acme, globex]) == [
        Status.COMPLETED,
        Status.RUNNING,  # acme's one call of the window is spent
        Status.COMPLETED,
    ]


class Flaky(Step):
    """Fails its first attempt, retried at once: the retry is a second call."""

    events = ("ok",)
    rate_limit = RateLimit(1, per=SECOND)
    retry = Retry(max_attempts=2, backoff=timedelta(milliseconds=10), jitter=False)
    attempts: list[int] = []

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> str:
        Flaky.attempts.append(1)
        if len(Flaky.attempts) == 1:
            raise RuntimeError("the partner hiccuped")
        return "ok"


class FlakyFlow(Workflow):
    start_step = Flaky
    transitions = {Flaky: {"ok": Done}}


def test_each_execution_counts_a_retry_too(
    local: LocalRunner, storage: InMemoryStorage, clock: Clock
) -> None:
    Flaky.attempts.clear()
    instance_id = FlakyFlow.start({})
    clock.advance(seconds=0.1)
    local.work(storage=storage)  # the retry is due, but the window's one call is spent
    assert len(Flaky.attempts) == 1
    assert [place.position for place in storage.places(instance_id)] == [1]
    clock.advance(seconds=1)
    local.work(storage=storage)
    local.work(storage=storage)
    assert len(Flaky.attempts) == 2
    assert FlakyFlow.get(instance_id).status is Status.COMPLETED


# --- a holder cancelled or deleted while its step runs: its execution still counts ------------


@pytest.mark.parametrize("end", ["cancel", "delete"])
def test_a_holder_cancelled_or_deleted_during_its_run_still_counts_in_its_window(
    local: LocalRunner, storage: InMemoryStorage, clock: Clock, end: str
) -> None:
    def ending(instance: Instance) -> None:
        if end == "cancel":
            local.cancel(instance.id, storage=storage)
        else:
            local.delete(instance.id, storage=storage)

    SelfEnding.ran.clear()
    SelfEnding.during = ending
    try:
        if end == "cancel":
            first = SelfEndingFlow.start({"name": "first"})
            assert SelfEndingFlow.get(first).status is Status.CANCELLED
        else:
            with pytest.raises(InstanceDeletedError):  # its result's write finds it gone
                SelfEndingFlow.start({"name": "first"})
        assert SelfEnding.ran == ["first"]
        SelfEnding.during = None
        second = SelfEndingFlow.start({"name": "second"})
        local.work(storage=storage)
        assert SelfEnding.ran == ["first"]  # the cancelled call counts: the window is full
        [use] = [use for use in storage.limits() if use.name.endswith("SelfEnding")]
        assert (use.holding, use.waiting) == (1, 1)
        clock.advance(seconds=61)
        local.work(storage=storage)
        local.work(storage=storage)
        assert SelfEnding.ran == ["first", "second"]
        assert SelfEndingFlow.get(second).status is Status.COMPLETED
    finally:
        SelfEnding.during = None
