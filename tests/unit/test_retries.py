"""Retry policies: the value, its checks at class definition, the engine, both runners.

On InMemoryStorage with a clock the test moves; the backoff is a timer, so the next
attempt happens when a worker (``runner.work``) or a wake-up job finds it due.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    Event,
    InstanceNotWaitingError,
    Retry,
    Status,
    Step,
    StepDefinitionError,
    UnexpectedEventError,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.instance import Instance, Waiting
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    WakeUp,
    configure,
)
from hephaestus_django.runtime.document import from_row, to_row
from tests import flows
from tests.flows import Flaky, Retried
from tests.timers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def storage(clock: Clock) -> Iterator[InMemoryStorage]:
    storage = InMemoryStorage(clock=clock)
    configure(storages={"default": storage}, runner=LocalRunner())
    yield storage
    configure()


@pytest.fixture
def dispatcher(storage: InMemoryStorage) -> Iterator[InMemoryDispatcher]:
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield dispatcher
    runner.close()


def attempts_in_history(instance: Instance) -> list[tuple[str, str]]:
    return [
        (entry.step.__name__, entry.error.message if entry.error else entry.event)
        for entry in instance.execution_history
    ]


# --- the value ------------------------------------------------------------------------------


def test_the_defaults_are_the_originals() -> None:
    policy = Retry()
    assert (policy.max_attempts, policy.backoff, policy.factor, policy.max_backoff) == (
        5,
        timedelta(seconds=1),
        2.0,
        timedelta(minutes=1),
    )
    assert policy.jitter is True
    assert policy.on == (Exception,)
    assert policy.problems() == []


def test_the_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    policy = Retry(backoff=timedelta(seconds=1), factor=2, max_backoff=timedelta(seconds=60))
    assert [policy.delay(n, 0.999999).total_seconds() for n in (1, 2, 3)] == pytest.approx(
        [1, 2, 4], rel=1e-5
    )
    assert policy.delay(7, 1.0) == timedelta(seconds=60)
    assert policy.delay(10_000, 1.0) == timedelta(seconds=60)  # no overflow


def test_jitter_scales_the_wait_between_half_and_all_of_it() -> None:
    policy = Retry(backoff=timedelta(seconds=8), factor=1)
    assert policy.delay(1, 0.0) == timedelta(seconds=4)
    assert policy.delay(1, 0.5) == timedelta(seconds=6)
    assert Retry(backoff=timedelta(seconds=8), jitter=False).delay(1, 0.0) == timedelta(seconds=8)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (Retry(max_attempts=0), "max_attempts must be an int of at least 1, not 0"),
        (Retry(max_attempts=True), "max_attempts"),
        (Retry(max_attempts=2.0), "max_attempts"),  # type: ignore[arg-type]
        (Retry(backoff=timedelta(seconds=-1)), "backoff must not be negative"),
        (Retry(backoff=3), "backoff must be a timedelta, not 3"),  # type: ignore[arg-type]
        (Retry(max_backoff=timedelta(seconds=-1)), "max_backoff must not be negative"),
        (Retry(factor=0.5), "factor must be a number of at least 1"),
        (Retry(factor=float("nan")), "factor"),
        (Retry(on=ValueError), "on must be a non-empty tuple"),  # type: ignore[arg-type]
        (Retry(on=()), "on must be a non-empty tuple"),
        (Retry(on=("ValueError",)), "on must hold subclasses of Exception only"),  # type: ignore[arg-type]
        (Retry(on=(KeyboardInterrupt,)), "on must hold subclasses of Exception only"),  # type: ignore[arg-type]
        (Retry(jitter="yes"), "jitter must be True or False"),  # type: ignore[arg-type]
    ],
)
def test_a_malformed_policy_says_what_is_wrong(policy: Retry, problem: str) -> None:
    (found,) = policy.problems()
    assert problem in found


# --- checked when the class is defined ------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        (Retry(max_attempts=0), "max_attempts"),
        (Retry(backoff=timedelta(seconds=-5)), "backoff must not be negative"),
        (Retry(on=(ValueError, "TimeoutError")), "subclasses of Exception"),  # type: ignore[arg-type]
        (5, "retry must be a Retry(...) or None, not 5"),
    ],
)
def test_a_malformed_step_policy_is_refused_naming_the_step(policy: Any, problem: str) -> None:
    with pytest.raises(StepDefinitionError) as raised:

        class Charge(Step):
            events = ("ok",)
            retry = policy

    assert raised.value.rule == "malformed-retry"
    assert (
        raised.value.step
        == "test_a_malformed_step_policy_is_refused_naming_the_step.<locals>.Charge"
    )
    assert "Charge" in str(raised.value)
    assert problem in str(raised.value)


def test_a_malformed_workflow_default_is_refused_naming_the_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError) as raised:

        class Broken(Workflow):
            default_retry = Retry(max_attempts=0)
            start_step = Flaky
            transitions = {Flaky: {"ok": Done}}

    assert raised.value.rule == "malformed-retry"
    assert "Broken" in str(raised.value)
    assert "max_attempts" in str(raised.value)


def test_built_in_steps_need_no_policy() -> None:
    assert Done.retry is None
    assert WaitForEvent.retry is None
    assert engine.retry_policy(Retried, Done) is None
    assert engine.retry_policy(Retried, Flaky) is Flaky.retry
    assert engine.retry_policy(flows.RetriedByDefault, flows.PlainFlaky) is (
        flows.RetriedByDefault.default_retry
    )


# --- the engine -----------------------------------------------------------------------------

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def running(workflow: type[Workflow] = Retried) -> Instance:
    return engine.start(engine.new_instance(workflow, {}))


def test_a_failed_attempt_waits_on_a_retry_timer() -> None:
    instance = running()
    failed = engine.apply(
        instance, [Executed(Flaky, error=flows.Transient("down"))], now=T0, random=lambda: 0.0
    )
    assert failed.status is Status.WAITING
    assert failed.error is None
    assert failed.active_steps == {Flaky}
    assert failed.waiting_steps == {
        Flaky: Waiting(since=T0, resume_at=T0 + timedelta(seconds=10), attempt=2)
    }
    assert failed.attempts == {Flaky: 1}
    (entry,) = failed.execution_history
    assert (entry.step, entry.event, entry.next_steps, entry.failed) == (Flaky, "", (), True)
    assert entry.error is not None
    assert (entry.error.error_type, entry.error.message) == ("tests.flows.Transient", "down")
    assert engine.next_due_time(failed) == T0 + timedelta(seconds=10)
    assert engine.runnable(failed) == []

    assert engine.fire_due_timers(failed, now=T0 + timedelta(seconds=9)) is failed
    due = engine.fire_due_timers(failed, now=T0 + timedelta(seconds=10))
    assert due.status is Status.RUNNING
    assert due.waiting_steps == {}
    assert [a.step for a in engine.runnable(due)] == [Flaky]
    assert due.attempts == {Flaky: 1}
    assert due.execution_history == failed.execution_history


def test_attempts_run_out_and_the_instance_fails_with_the_last_error() -> None:
    instance = running()
    for attempt in (1, 2, 3):
        instance = engine.fire_due_timers(instance, now=T0 + timedelta(hours=attempt))
        instance = engine.apply(
            instance,
            [Executed(Flaky, error=flows.Transient(f"attempt {attempt}"))],
            now=T0 + timedelta(hours=attempt),
        )
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.message == "attempt 3"
    assert instance.attempts == {Flaky: 3}
    assert attempts_in_history(instance) == [("Flaky", "attempt 1"), ("Flaky", "attempt 2")]
    assert engine.next_due_time(instance) is None

    again = engine.retry(instance)
    assert again.status is Status.RUNNING
    assert again.attempts == {}
    # the failure retry() clears is kept as the last failed attempt
    assert attempts_in_history(again) == [
        ("Flaky", "attempt 1"),
        ("Flaky", "attempt 2"),
        ("Flaky", "attempt 3"),
    ]


def test_a_completed_step_drops_its_count() -> None:
    instance = running()
    instance = engine.apply(instance, [Executed(Flaky, error=flows.Transient("x"))], now=T0)
    instance = engine.fire_due_timers(instance, now=T0 + timedelta(minutes=1))
    done = engine.apply(instance, [Executed(Flaky, outcome=Event("ok"))], now=T0)
    done = engine.apply(done, [Executed(Done, outcome=Event("done"))], now=T0)
    assert done.status is Status.COMPLETED
    assert done.attempts == {}
    assert done.current_step is Done


def test_a_retry_wait_cannot_be_resumed_and_nothing_changes() -> None:
    instance = engine.apply(running(), [Executed(Flaky, error=flows.Transient("x"))], now=T0)
    with pytest.raises(InstanceNotWaitingError) as raised:
        engine.resume(instance, "ok", now=T0)
    assert "Flaky waits to retry: attempt 2 of 3 at 2026-01-05 09:00:10+00:00" in str(raised.value)
    with pytest.raises(UnexpectedEventError, match="Flaky waits to retry: attempt 2 of 3"):
        engine.resume(instance, "ok", now=T0, step=Flaky)


def test_the_state_document_keeps_attempts_and_errors() -> None:
    instance = engine.apply(running(), [Executed(Flaky, error=flows.Transient("x"))], now=T0)
    row = to_row(instance)
    assert row.due_at == T0 + timedelta(seconds=10)
    assert row.state["attempts"] == {Flaky.path(): 1}
    assert row.state["waiting_steps"][Flaky.path()]["attempt"] == 2
    assert row.state["execution_history"][0]["error"]["message"] == "x"
    read = from_row(row)
    assert read.attempts == instance.attempts
    assert read.waiting_steps == instance.waiting_steps
    assert read.execution_history == instance.execution_history
    # a document written before retries existed has none of these keys
    plain = to_row(running())
    assert "attempts" not in plain.state


# --- LocalRunner ----------------------------------------------------------------------------


def test_local_runner_fails_twice_then_succeeds(
    storage: InMemoryStorage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = LocalRunner()
    with caplog.at_level(logging.INFO, logger="hephaestus_django.runner"):
        instance_id = Retried.start({"fails": 2})
    assert (
        f"instance {instance_id} (Retried): Flaky waits to retry: attempt 2 of 3 at "
        "2026-01-05 09:00:10+00:00" in caplog.messages
    )
    instance = Retried.get(instance_id)
    assert instance.status is Status.WAITING  # the caller is not kept waiting for the backoff
    assert instance.waiting_steps[Flaky].resume_at == clock.now + timedelta(seconds=10)
    assert instance.lease_owner is None
    clock.advance(seconds=9)
    assert runner.work(storage=storage) == []
    clock.advance(seconds=1)
    [after_second] = runner.work(storage=storage)
    assert after_second.status is Status.WAITING
    assert after_second.waiting_steps[Flaky].attempt == 3
    assert after_second.waiting_steps[Flaky].resume_at == clock.now + timedelta(seconds=15)
    clock.advance(seconds=15)
    [done] = runner.work(storage=storage)
    assert done.status is Status.COMPLETED
    assert flows.runs(instance_id) == 3
    assert attempts_in_history(done) == [
        ("Flaky", "run 1 failed"),
        ("Flaky", "run 2 failed"),
        ("Flaky", "ok"),
        ("Done", "done"),
    ]
    assert done.context.steps == {"flaky": {"runs": 3}}
    assert done.attempts == {}


def test_local_runner_keeps_every_error_when_attempts_run_out(
    storage: InMemoryStorage, clock: Clock
) -> None:
    runner = LocalRunner()
    instance_id = Retried.start({"fails": 5})
    for _ in range(2):
        clock.advance(minutes=1)
        runner.work(storage=storage)
    failed = Retried.get(instance_id)
    assert failed.status is Status.FAILED
    assert flows.runs(instance_id) == 3
    assert failed.error is not None
    assert failed.error.message == "run 3 failed"
    assert attempts_in_history(failed) == [("Flaky", "run 1 failed"), ("Flaky", "run 2 failed")]

    # Workflow.retry starts the count again: three more attempts, of which the sixth run
    # succeeds
    retried = Retried.retry(instance_id)
    assert retried.status is Status.WAITING
    assert retried.attempts == {Flaky: 1}
    clock.advance(minutes=1)
    [again] = runner.work(storage=storage)
    assert again.attempts == {Flaky: 2}
    clock.advance(minutes=1)
    [done] = runner.work(storage=storage)
    assert done.status is Status.COMPLETED
    assert flows.runs(instance_id) == 6


@pytest.mark.parametrize("error", ["declined", "unrelated"])
def test_expected_errors_and_errors_the_policy_does_not_name_are_not_retried(
    storage: InMemoryStorage, error: str
) -> None:
    instance_id = Retried.start({"fails": 1, "error": error})
    failed = Retried.get(instance_id)
    assert failed.status is Status.FAILED
    assert flows.runs(instance_id) == 1
    assert failed.execution_history == ()
    assert failed.error is not None
    assert failed.error.message == "run 1 failed"


def test_the_workflow_default_applies_unless_a_step_opts_out(
    storage: InMemoryStorage, clock: Clock
) -> None:
    instance_id = flows.RetriedByDefault.start({"plain_flaky_fails": 1, "once_only_fails": 1})
    assert flows.RetriedByDefault.get(instance_id).waiting_steps[flows.PlainFlaky].attempt == 2
    clock.advance(seconds=5)
    [failed] = LocalRunner().work(storage=storage)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.step is flows.OnceOnly
    assert flows.runs(instance_id, flows.PlainFlaky) == 2
    assert flows.runs(instance_id, flows.OnceOnly) == 1


def test_resuming_a_retry_wait_through_the_facade_changes_nothing(
    storage: InMemoryStorage,
) -> None:
    instance_id = Retried.start({"fails": 1})
    before = Retried.get(instance_id)
    with pytest.raises(InstanceNotWaitingError, match="waits to retry: attempt 2 of 3"):
        Retried.resume(instance_id, "ok")
    assert Retried.get(instance_id).revision == before.revision


# --- QueuedRunner ---------------------------------------------------------------------------


def test_queued_runner_fails_twice_then_succeeds(
    dispatcher: InMemoryDispatcher, storage: InMemoryStorage, clock: Clock
) -> None:
    instance_id = Retried.start({"fails": 2})
    dispatcher.drain()
    waiting = Retried.get(instance_id)
    assert waiting.status is Status.WAITING
    [wakeup] = dispatcher.jobs
    assert isinstance(wakeup, WakeUp)
    assert wakeup.at == clock.now + timedelta(seconds=10)
    assert waiting.lease_owner is not None  # the sweep leaves it to its wake-up job
    clock.advance(seconds=10)
    dispatcher.drain()
    assert Retried.get(instance_id).waiting_steps[Flaky].attempt == 3
    clock.advance(seconds=15)
    dispatcher.drain()
    done = Retried.get(instance_id)
    assert done.status is Status.COMPLETED
    assert flows.runs(instance_id) == 3
    assert attempts_in_history(done)[:2] == [("Flaky", "run 1 failed"), ("Flaky", "run 2 failed")]
    assert done.lease_owner is None
    assert dispatcher.jobs == []


def test_a_late_duplicate_of_a_failed_attempts_job_runs_nothing(
    dispatcher: InMemoryDispatcher, storage: InMemoryStorage, clock: Clock
) -> None:
    """The job engine delivers attempt 1's job again after the retry timer made the step
    runnable for attempt 2: the duplicate does nothing, so the step runs no more often than
    its policy allows."""
    instance_id = Retried.start({"fails": 1})
    [first] = dispatcher.jobs
    assert isinstance(first, StepJob)
    assert (first.attempt, "attempt" in first.payload()) == (1, False)
    dispatcher.drain()  # attempt 1 fails
    clock.advance(seconds=10)
    [wakeup] = dispatcher.take()
    dispatcher.run(wakeup)  # the timer fires: attempt 2 is enqueued
    [second] = dispatcher.jobs
    assert isinstance(second, StepJob)
    assert (second.attempt, second.payload()["attempt"]) == (2, "2")

    assert dispatcher.run(first) is None  # the late duplicate of attempt 1
    assert flows.runs(instance_id) == 1
    dispatcher.drain()
    assert flows.runs(instance_id) == 2
    assert Retried.get(instance_id).status is Status.COMPLETED


def test_queued_runner_a_lost_wake_up_is_fired_by_the_sweep(
    dispatcher: InMemoryDispatcher, storage: InMemoryStorage, clock: Clock
) -> None:
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    instance_id = Retried.start({"fails": 1})
    dispatcher.drain()
    dispatcher.take()  # the job engine lost the wake-up
    clock.advance(seconds=41)
    [handled] = runner.work(storage=storage)
    assert handled.status is Status.RUNNING
    dispatcher.drain()
    assert Retried.get(instance_id).status is Status.COMPLETED
    assert flows.runs(instance_id) == 2
