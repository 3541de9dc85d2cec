"""Step timeouts: the value and its checks, ``StepTimeout``, and both runners honouring it.

On InMemoryStorage, without a database. No test asserts on timing: a step that must overrun
blocks on an event the test sets only once the runner has given up on it (``flows.release``),
and one that must be on time returns at once, far inside its timeout.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

import hephaestus_django
from hephaestus_django import (
    Done,
    Event,
    HephaestusError,
    Retry,
    Status,
    Step,
    StepDefinitionError,
    StepTimeout,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    WakeUp,
    configure,
)
from hephaestus_django.runtime.bounded import abandoned_attempts
from tests import flows
from tests.flows import RetriedStalling, Stalling, Stalls, StallsThenRecovers
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


def history(instance: Instance) -> list[tuple[str, str]]:
    return [
        (
            entry.step.__name__,
            entry.error.error_type.rsplit(".", 1)[1] if entry.error else entry.event,
        )
        for entry in instance.execution_history
    ]


class InTransaction(InMemoryStorage):
    """A storage whose caller is always inside a transaction, as with ``DjangoStorage`` inside
    ``transaction.atomic()``: steps run in the caller's thread."""

    def in_transaction(self) -> bool:
        return True


# --- the value, checked when the class is defined -------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "problem"),
    [
        (timedelta(0), "timeout must be a positive timedelta, not datetime.timedelta(0)"),
        (timedelta(seconds=-1), "timeout must be a positive timedelta"),
        (5, "timeout must be a timedelta or None, not 5"),
        ("30s", "timeout must be a timedelta or None, not '30s'"),
    ],
)
def test_a_malformed_timeout_is_refused_naming_the_step(timeout: Any, problem: str) -> None:
    bound = timeout  # a class body's ``timeout = timeout`` would not see the argument
    with pytest.raises(StepDefinitionError) as raised:

        class Fetch(Step):
            events = ("ok",)
            timeout = bound

    assert raised.value.rule == "malformed-timeout"
    assert raised.value.step is not None
    assert raised.value.step.endswith("Fetch")
    assert f"Fetch: malformed timeout (malformed-timeout): {problem}" in str(raised.value)


@pytest.mark.parametrize("timeout", [timedelta(0), 30, "1h"])
def test_a_malformed_default_timeout_is_refused_naming_the_workflow(timeout: Any) -> None:
    bound = timeout
    with pytest.raises(WorkflowDefinitionError) as raised:

        class Bounded(Workflow):
            default_timeout = bound
            start_step = Stalling
            transitions = {Stalling: {"ok": Done}}

    assert raised.value.rule == "malformed-timeout"
    assert "Bounded: malformed default_timeout: default_timeout must be" in str(raised.value)


def test_a_steps_own_timeout_wins_over_its_workflows_default() -> None:
    class Unbounded(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
            return "ok"

    class Bounded(Workflow):
        default_timeout = timedelta(minutes=1)
        start_step = Stalling
        transitions = {Stalling: {"ok": Unbounded}, Unbounded: {"ok": Done}}

    assert engine.step_timeout(Bounded, Stalling) == flows.TIMEOUT
    assert engine.step_timeout(Bounded, Unbounded) == timedelta(minutes=1)
    assert engine.step_timeout(Stalls, Unbounded) is None
    assert Unbounded.timeout is None
    assert Stalling.timeout == flows.TIMEOUT


def test_step_timeout_is_an_exception_a_default_policy_retries_and_is_exported() -> None:
    assert hephaestus_django.StepTimeout is StepTimeout
    assert "StepTimeout" in hephaestus_django.__all__
    assert issubclass(StepTimeout, HephaestusError)
    assert issubclass(StepTimeout, TimeoutError)
    instance_id = uuid4()
    error = StepTimeout(
        instance_id=instance_id, workflow="Checkout", step="Charge", timeout=timedelta(seconds=5)
    )
    assert Retry().allows(1, error)  # on=(Exception,)
    assert Retry(on=(TimeoutError,)).allows(1, error)
    assert str(error) == (
        f"step Charge of instance {instance_id} (Checkout) ran longer than its timeout of "
        f"0:00:05, so the attempt counts as failed and its late result will be discarded; make "
        f"the step return in time (give what it waits on a timeout shorter than the step's), or "
        f"give the step a longer timeout"
    )
    assert (error.instance_id, error.workflow, error.step) == (instance_id, "Checkout", "Charge")
    assert error.timeout == timedelta(seconds=5)


# --- LocalRunner ----------------------------------------------------------------------------


def test_an_overrunning_attempt_fails_the_instance_and_its_late_result_is_never_recorded(
    storage: InMemoryStorage,
) -> None:
    instance_id = uuid4()
    failed = Stalls.get(Stalls.start({"hangs": 1}, id=instance_id))
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.step is Stalling
    assert failed.error.error_type == "hephaestus_django.core.errors.StepTimeout"
    assert f"step Stalling of instance {instance_id} (Stalls) ran longer than its" in (
        failed.error.message
    )
    # Where the step was when it overran: the note under the error, in the stored traceback.
    assert failed.error.traceback is not None
    assert "when it timed out, the step was at" in failed.error.traceback
    assert "gate(instance.id).wait(timeout=60)" in failed.error.traceback

    flows.release(instance_id)  # the abandoned attempt returns its event, late

    after = storage.get(instance_id)
    assert after.revision == failed.revision  # nothing was written since
    assert after.status is Status.FAILED
    assert "stalling" not in after.context.steps
    assert history(after) == []  # no attempt of a step without a policy goes into the history
    assert flows.runs(instance_id, Stalling) == 1


def test_a_retry_policy_runs_the_next_attempt_and_the_late_result_stays_discarded(
    storage: InMemoryStorage, clock: Clock
) -> None:
    instance_id = uuid4()
    waiting = StallsThenRecovers.get(StallsThenRecovers.start({"hangs": 1}, id=instance_id))
    assert waiting.status is Status.WAITING
    assert waiting.waiting_steps[RetriedStalling].attempt == 2
    assert history(waiting) == [("RetriedStalling", "StepTimeout")]

    (done,) = LocalRunner().work(storage=storage)  # the backoff is zero: attempt 2 is due
    assert done.status is Status.COMPLETED
    assert done.context.result(RetriedStalling) == {"attempt": 2}
    assert history(done) == [
        ("RetriedStalling", "StepTimeout"),
        ("RetriedStalling", "ok"),
        ("Done", "done"),
    ]

    flows.release(instance_id)  # attempt 1 returns {"attempt": 1, "late": True} at last

    after = storage.get(instance_id)
    assert after.revision == done.revision
    assert after.context.result(RetriedStalling) == {"attempt": 2}
    assert flows.runs(instance_id, RetriedStalling) == 2


def test_a_step_on_time_completes_as_without_a_timeout(storage: InMemoryStorage) -> None:
    instance_id = uuid4()
    done = Stalls.get(Stalls.start({"hangs": 0}, id=instance_id))
    assert done.status is Status.COMPLETED
    assert done.context.result(Stalling) == {"attempt": 1}


class Boom(ValueError):
    pass


class Raising(Step):
    events = ("ok",)
    timeout = timedelta(hours=1)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        raise Boom("the step's own error")


class RaisesInTime(Workflow):
    start_step = Raising
    transitions = {Raising: {"ok": Done}}


def test_an_error_raised_in_time_is_the_attempts_error_with_its_traceback(
    storage: InMemoryStorage,
) -> None:
    failed = RaisesInTime.get(RaisesInTime.start({}))
    assert failed.error is not None
    assert failed.error.error_type.endswith("Boom")
    assert failed.error.message == "the step's own error"
    assert failed.error.traceback is not None
    assert 'raise Boom("the step\'s own error")' in failed.error.traceback


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


class ReadsContext(Step):
    events = ("ok",)
    timeout = timedelta(hours=1)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        here = threading.current_thread()
        return Event("ok", updates={"request": REQUEST.get(), "thread": here.name})


class ReadsContextFlow(Workflow):
    start_step = ReadsContext
    transitions = {ReadsContext: {"ok": Done}}


def test_a_timed_step_runs_on_a_thread_of_its_own_with_the_callers_context_variables(
    storage: InMemoryStorage,
) -> None:
    token = REQUEST.set("req-42")
    try:
        done = ReadsContextFlow.get(ReadsContextFlow.start({}))
    finally:
        REQUEST.reset(token)
    result = done.context.result(ReadsContext)
    assert result["request"] == "req-42"
    assert result["thread"] == f"hephaestus-attempt ReadsContext of {done.id}"


def test_the_workflows_default_timeout_bounds_its_steps(storage: InMemoryStorage) -> None:
    class Hangs(Stalling):
        timeout = None

    class BoundedByDefault(Workflow):
        default_timeout = flows.TIMEOUT
        start_step = Hangs
        transitions = {Hangs: {"ok": Done}}

    instance_id = uuid4()
    failed = BoundedByDefault.get(BoundedByDefault.start({"hangs": 1}, id=instance_id))
    flows.release(instance_id)
    assert failed.error is not None
    assert failed.error.error_type.endswith("StepTimeout")
    assert storage.get(instance_id).revision == failed.revision


class Quick(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return Event("ok", updates={"quick": True})


class StallingBranch(Stalling):
    pass


class Joined(Step):
    events = ("ok",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return "ok"


class Starts(Step):
    events = ("go",)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        return "go"


class FanOutWithATimeout(Workflow):
    start_step = Starts
    transitions = {
        Starts: {"go": [StallingBranch, Quick]},
        StallingBranch: {"ok": Joined},
        Quick: {"ok": Joined},
        Joined: {"ok": Done},
    }


def test_a_fan_out_branch_that_overruns_fails_the_wave_like_a_branch_that_raises(
    storage: InMemoryStorage,
) -> None:
    instance_id = uuid4()
    failed = FanOutWithATimeout.get(FanOutWithATimeout.start({"hangs": 1}, id=instance_id))
    flows.release(instance_id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.step is StallingBranch
    assert failed.error.error_type.endswith("StepTimeout")
    assert storage.get(instance_id).revision == failed.revision


def test_abandoned_attempts_are_counted_and_their_late_end_is_logged(
    storage: InMemoryStorage, caplog: pytest.LogCaptureFixture
) -> None:
    before = abandoned_attempts()
    instance_id = uuid4()
    with caplog.at_level(logging.WARNING, logger="hephaestus_django.runner"):
        Stalls.start({"hangs": 1}, id=instance_id)
        assert abandoned_attempts() == before + 1
        flows.release(instance_id)
    assert abandoned_attempts() == before
    timed_out, discarded = [
        r.getMessage() for r in caplog.records if str(instance_id) in r.getMessage()
    ]
    assert "failed: StepTimeout: step Stalling of instance" in timed_out
    assert "abandoned attempt(s) running in this process" in caplog.records[0].exc_text  # type: ignore[operator]
    assert discarded.startswith(
        f"step Stalling of instance {instance_id} (Stalls), abandoned after its timeout of "
        f"{flows.TIMEOUT}, ended "
    )
    assert "returned Event(name='ok'" in discarded
    assert discarded.endswith("discarded, the attempt was recorded as timed out")


# --- inside the caller's transaction --------------------------------------------------------


class Sleeps(Step):
    """Runs far past its timeout, and returns: the timeout cannot interrupt it here."""

    events = ("ok",)
    timeout = timedelta(microseconds=1)

    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(0.01)  # ten thousand times its timeout
        return Event("ok", updates={"thread": threading.current_thread().name})


class SleepsFlow(Workflow):
    start_step = Sleeps
    transitions = {Sleeps: {"ok": Done}}


class RaisesLate(Sleeps):
    def execute(self, instance: Instance, config: Mapping[str, Any], context: Context) -> Any:
        time.sleep(0.01)
        raise Boom("raised after the timeout")


class RaisesLateFlow(Workflow):
    start_step = RaisesLate
    transitions = {RaisesLate: {"ok": Done}}


def test_inside_a_transaction_the_step_runs_in_the_callers_thread_and_an_overrun_is_found_after(
    clock: Clock,
) -> None:
    storage = InTransaction(clock=clock)
    failed = LocalRunner().start(SleepsFlow, {}, storage=storage)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.error_type.endswith("StepTimeout")
    assert failed.error.traceback is not None
    assert "It ran in the caller's thread, inside the caller's transaction" in (
        failed.error.traceback
    )
    assert "it returned after" in failed.error.traceback
    assert "sleeps" not in failed.context.steps  # the result it returned is discarded

    within = type("Within", (Sleeps,), {"timeout": timedelta(hours=1)})
    flow = type(
        "WithinFlow", (Workflow,), {"start_step": within, "transitions": {within: {"ok": Done}}}
    )
    done = LocalRunner().start(flow, {}, storage=storage)
    assert done.context.result(within) == {"thread": threading.current_thread().name}


def test_inside_a_transaction_an_error_raised_late_is_the_timeouts_cause(clock: Clock) -> None:
    failed = LocalRunner().start(RaisesLateFlow, {}, storage=InTransaction(clock=clock))
    assert failed.error is not None
    assert failed.error.error_type.endswith("StepTimeout")
    assert failed.error.traceback is not None
    assert "Boom: raised after the timeout" in failed.error.traceback
    assert "The above exception was the direct cause" in failed.error.traceback


# --- QueuedRunner ---------------------------------------------------------------------------


def test_queued_a_job_records_the_timeout_and_the_next_attempt_completes(
    storage: InMemoryStorage, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = uuid4()
    StallsThenRecovers.start({"hangs": 1}, id=instance_id)
    [job] = dispatcher.take()
    assert isinstance(job, StepJob)
    waiting = dispatcher.run(job)  # attempt 1 overruns: the job records it and returns
    assert waiting is not None
    assert waiting.status is Status.WAITING
    assert waiting.waiting_steps[RetriedStalling].attempt == 2
    assert history(waiting) == [("RetriedStalling", "StepTimeout")]
    assert waiting.running == {}
    [wakeup] = dispatcher.jobs
    assert isinstance(wakeup, WakeUp)  # the backoff is zero: due at once

    dispatcher.drain()  # the wake-up, then attempt 2's job
    done = storage.get(instance_id)
    assert done.status is Status.COMPLETED
    assert done.context.result(RetriedStalling) == {"attempt": 2}

    flows.release(instance_id)

    after = storage.get(instance_id)
    assert after.revision == done.revision
    assert after.context.result(RetriedStalling) == {"attempt": 2}
    assert dispatcher.jobs == []


def test_queued_without_a_policy_the_timeout_fails_the_instance(
    storage: InMemoryStorage, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = uuid4()
    Stalls.start({"hangs": 1}, id=instance_id)
    dispatcher.drain()
    failed = storage.get(instance_id)
    flows.release(instance_id)
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.error_type.endswith("StepTimeout")
    assert failed.lease_owner is None  # nothing is left for the sweep, whatever the thread does
    assert storage.get(instance_id).revision == failed.revision
