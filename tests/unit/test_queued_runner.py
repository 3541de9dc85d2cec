"""QueuedRunner on InMemoryStorage and InMemoryDispatcher (no database, no job engine)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from hephaestus_django import (
    Done,
    InstanceNotWaitingError,
    InvalidJobError,
    Status,
    Wait,
    Workflow,
)
from hephaestus_django.core.errors import BackendNotConfigured
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    StepJob,
    WakeUp,
    configure,
)
from hephaestus_django.runtime.queued import receive
from tests import flows
from tests.timers import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def storage(clock: Clock) -> InMemoryStorage:
    return InMemoryStorage(clock=clock)


@pytest.fixture
def dispatcher() -> InMemoryDispatcher:
    return InMemoryDispatcher()


@pytest.fixture
def runner(storage: InMemoryStorage, dispatcher: InMemoryDispatcher) -> Iterator[QueuedRunner]:
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": storage}, runner=runner)
    yield runner
    runner.close()
    configure()


def step_jobs(dispatcher: InMemoryDispatcher) -> list[str]:
    return [job.step.rsplit(".", 1)[1] for job in dispatcher.jobs if isinstance(job, StepJob)]


def test_start_returns_before_any_step_runs(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    instance = flows.IfElse.get(instance_id)
    assert instance.status is Status.RUNNING
    assert instance.execution_history == ()
    assert flows.executions(instance_id) == {}
    assert step_jobs(dispatcher) == ["Check"]
    assert instance.lease_owner is not None
    assert instance.lease_owner.startswith("queued:")


def test_each_job_runs_one_step_and_enqueues_the_next(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    dispatcher.run(dispatcher.take()[0])
    assert flows.executions(instance_id) == {"check": 1}
    assert step_jobs(dispatcher) == ["Approve"]
    assert dispatcher.drain() == 2
    instance = flows.IfElse.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert instance.lease_owner is None
    assert [entry.step for entry in instance.execution_history] == [
        flows.Check,
        flows.Approve,
        flows.Merge,
        Done,
    ]


def test_fan_out_branches_are_separate_jobs_and_the_join_runs_once(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.FanOut.start({"script": {}})
    dispatcher.drain(limit=1)
    assert sorted(step_jobs(dispatcher)) == ["Charge", "Notify", "Pack"]
    branches = dispatcher.take()
    for job in reversed(branches):  # in any order
        dispatcher.run(job)
    assert step_jobs(dispatcher) == ["Join"]
    dispatcher.drain()
    assert flows.FanOut.get(instance_id).status is Status.COMPLETED
    assert flows.executions(instance_id) == {
        "split": 1,
        "pack": 1,
        "charge": 1,
        "notify": 1,
        "join": 1,
    }


def test_a_job_delivered_twice_records_one_result(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    [job] = dispatcher.take()
    dispatcher.run(job)
    caplog.set_level(logging.INFO, "hephaestus_django.queue")
    assert dispatcher.run(job) is None
    assert "not runnable" in caplog.text
    dispatcher.drain()
    instance = flows.IfElse.get(instance_id)
    assert [entry.step for entry in instance.execution_history].count(flows.Check) == 1
    assert flows.executions(instance_id)["check"] == 1


def test_two_deliveries_at_once_run_the_step_once_and_record_it_once(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, storage: InMemoryStorage
) -> None:
    """The second delivery comes while the first runs the step: the step's mark under the live
    queue lease refuses it (``mark_running``), so the step body runs once, not beside itself."""
    instance_id = flows.IfElse.start({"script": {}})
    [job] = dispatcher.take()
    rivals: list[Any] = []
    original = storage.put

    def put_after_a_rival(instance: Any) -> None:
        if not rivals:
            rivals.append(job)
            assert dispatcher.run(job) is None  # the duplicate: the step runs elsewhere
        original(instance)

    storage.put = put_after_a_rival  # type: ignore[method-assign]
    try:
        dispatcher.run(job)
    finally:
        del storage.put
    instance = flows.IfElse.get(instance_id)
    assert flows.executions(instance_id)["check"] == 1
    assert [entry.step for entry in instance.execution_history] == [flows.Check]
    assert step_jobs(dispatcher) == ["Approve"]


def test_resume_enqueues_what_the_event_made_runnable(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    dispatcher.drain()
    assert flows.TwoWaits.get(instance_id).status is Status.WAITING
    assert dispatcher.jobs == []
    flows.TwoWaits.resume(instance_id, "signed")
    assert dispatcher.jobs == []  # the join still waits for Payment
    instance = flows.TwoWaits.resume(instance_id, "paid")
    assert instance.status is Status.RUNNING
    assert step_jobs(dispatcher) == ["Join"]
    dispatcher.drain()
    assert flows.TwoWaits.get(instance_id).status is Status.COMPLETED


def test_an_event_delivered_twice_is_refused_the_second_time(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    dispatcher.drain()
    flows.TwoWaits.resume(instance_id, "paid")
    with pytest.raises(Exception, match="paid"):
        flows.TwoWaits.resume(instance_id, "paid")
    flows.TwoWaits.resume(instance_id, "signed")
    dispatcher.drain()
    assert flows.executions(instance_id)["join"] == 1


def test_a_failed_step_fails_the_instance_and_retry_enqueues_it_again(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.IfElse.start({"script": {"approve": "fail"}})
    dispatcher.drain()
    instance = flows.IfElse.get(instance_id)
    assert instance.status is Status.FAILED
    assert instance.lease_owner is None
    assert dispatcher.jobs == []
    with pytest.raises(InstanceNotWaitingError):
        flows.IfElse.resume(instance_id, "ok")
    assert flows.IfElse.retry(instance_id).status is Status.RUNNING
    assert step_jobs(dispatcher) == ["Approve"]


def test_a_job_of_a_deleted_or_corrupt_instance_is_dropped_and_logged(
    runner: QueuedRunner,
    dispatcher: InMemoryDispatcher,
    storage: InMemoryStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gone = flows.IfElse.start({"script": {}})
    storage.delete(gone)
    caplog.set_level(logging.INFO, "hephaestus_django.queue")
    assert dispatcher.drain() == 1
    assert f"instance {gone}" in caplog.text
    assert "no longer exists" in caplog.text


def test_a_malformed_payload_is_dropped_with_the_reason(
    runner: QueuedRunner, caplog: pytest.LogCaptureFixture
) -> None:
    assert receive({"kind": "step", "storage": "default", "instance": "nope", "step": "x"}) is None
    assert "'instance' must be a UUID" in caplog.text
    assert receive(["not", "a", "dict"]) is None
    assert receive({"kind": "wake-up", "storage": "default", "instance": str(uuid4())}) is None
    assert "'at' must be a non-empty string" in caplog.text
    assert "must be a JSON object" in caplog.text
    for attempt in ("0", "-1", "two", 2):
        step = StepJob("default", uuid4(), "tests.flows.Check").payload()
        assert receive({**step, "attempt": attempt}) is None
        assert (
            f"'attempt' must be a whole number from 1 to {2**31 - 1} as a string, not {attempt!r}"
            in caplog.text
        )


def test_a_job_for_a_storage_that_is_not_configured_is_an_error(runner: QueuedRunner) -> None:
    job = StepJob("tenant_x", uuid4(), "tests.flows.Check")
    with pytest.raises(BackendNotConfigured, match="tenant_x"):
        receive(job.payload())


def test_a_worker_configured_with_another_runner_refuses_the_job(
    storage: InMemoryStorage,
) -> None:
    configure(storages={"default": storage}, runner=LocalRunner())
    try:
        job = StepJob("default", uuid4(), "tests.flows.Check")
        with pytest.raises(InvalidJobError, match="QueuedRunner"):
            receive(job.payload())
    finally:
        configure()


class Pause(Workflow):
    start_step = flows.Approve
    transitions = {
        flows.Approve: {"ok": Wait.configure(duration=5, unit="minutes")},
        Wait: {"timeout": Done},
    }


class LongPause(Workflow):
    start_step = flows.Approve
    transitions = {
        flows.Approve: {"ok": Wait.configure(duration=3, unit="days")},
        Wait: {"timeout": Done},
    }


def test_a_timer_is_a_wake_up_job_at_its_due_time(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = Pause.start({})
    dispatcher.drain()
    instance = Pause.get(instance_id)
    assert instance.status is Status.WAITING
    [wakeup] = dispatcher.jobs
    assert isinstance(wakeup, WakeUp)
    assert wakeup.at == clock.now + timedelta(minutes=5)
    # the lease keeps the sweep off the timer while its wake-up is on its way
    assert instance.lease_expires_at == wakeup.at + runner.lease
    assert runner.work(storage=runner_storage()) == []
    clock.advance(minutes=5)
    assert runner.work(storage=runner_storage()) == []
    assert dispatcher.drain() == 1
    assert Pause.get(instance_id).status is Status.COMPLETED


def test_an_early_or_repeated_wake_up_changes_nothing(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = Pause.start({})
    dispatcher.drain()
    [wakeup] = dispatcher.take()
    before = Pause.get(instance_id)
    dispatcher.run(wakeup)  # two minutes early: enqueues itself again for the due time
    assert Pause.get(instance_id).revision == before.revision
    assert dispatcher.jobs == [wakeup]
    clock.advance(minutes=5)
    dispatcher.drain()
    completed = Pause.get(instance_id)
    assert completed.status is Status.COMPLETED
    dispatcher.run(wakeup)
    assert Pause.get(instance_id).revision == completed.revision


def test_a_timer_beyond_the_horizon_gets_no_job_and_the_sweep_fires_it(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = LongPause.start({})
    dispatcher.drain()
    assert dispatcher.jobs == []
    assert LongPause.get(instance_id).lease_owner is None
    clock.advance(days=3)
    [handled] = runner.work(storage=runner_storage())
    assert handled.status is Status.COMPLETED


def test_a_lost_wake_up_is_fired_by_the_sweep_one_lease_late(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = Pause.start({})
    dispatcher.drain()
    dispatcher.take()  # the job engine lost it
    clock.advance(minutes=5)
    assert runner.work(storage=runner_storage()) == []
    clock.advance(seconds=31)
    [handled] = runner.work(storage=runner_storage())
    assert handled.id == instance_id
    assert handled.status is Status.COMPLETED


def test_a_lost_step_job_is_enqueued_again_by_the_sweep_not_run_by_it(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = flows.FanOut.start({"script": {}})
    dispatcher.drain(limit=1)
    dispatcher.take()  # the three branch jobs are lost (a worker died with them)
    assert runner.work(storage=runner_storage()) == []  # the lease is live
    clock.advance(seconds=31)
    [handled] = runner.work(storage=runner_storage())
    assert handled.id == instance_id
    assert flows.executions(instance_id) == {"split": 1}  # the sweep ran nothing
    assert sorted(step_jobs(dispatcher)) == ["Charge", "Notify", "Pack"]
    dispatcher.drain()
    assert flows.FanOut.get(instance_id).status is Status.COMPLETED


def test_a_late_job_from_before_a_take_over_still_counts_once(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher, clock: Clock
) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    [slow] = dispatcher.take()
    clock.advance(seconds=31)
    runner.work(storage=runner_storage())
    [again] = dispatcher.take()
    dispatcher.run(slow)  # the first delivery was only slow
    dispatcher.run(again)
    dispatcher.drain()
    instance = flows.IfElse.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert [entry.step for entry in instance.execution_history].count(flows.Check) == 1


def test_a_rolled_back_transition_enqueues_nothing(
    runner: QueuedRunner, dispatcher: InMemoryDispatcher
) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    dispatcher.drain()
    with pytest.raises(Exception, match="nope"):
        flows.TwoWaits.resume(instance_id, "nope")
    assert dispatcher.jobs == []


def test_queued_runner_options_are_checked() -> None:
    dispatcher = InMemoryDispatcher()
    with pytest.raises(ValueError, match="lease"):
        QueuedRunner(dispatcher=dispatcher, lease=0)
    with pytest.raises(ValueError, match="wakeup_horizon"):
        QueuedRunner(dispatcher=dispatcher, wakeup_horizon=timedelta(seconds=-1))
    with pytest.raises(TypeError, match="enqueue_steps"):
        QueuedRunner(dispatcher=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="could not be built"):
        QueuedRunner(dispatcher="hephaestus_django.nowhere.Dispatcher")
    built = QueuedRunner(dispatcher="hephaestus_django.runtime.InMemoryDispatcher")
    assert isinstance(built.dispatcher, InMemoryDispatcher)
    with pytest.raises(ValueError, match="dispatcher_options"):
        QueuedRunner(dispatcher=dispatcher, dispatcher_options={"queue": "x"})


def test_a_storage_object_that_is_not_configured_is_refused(
    runner: QueuedRunner,
) -> None:
    with pytest.raises(BackendNotConfigured, match="alias"):
        flows.IfElse.start({}, storage=InMemoryStorage())


def runner_storage() -> Any:
    from hephaestus_django.runtime import backends

    return backends.storage("default")


def test_a_job_renews_a_queue_lease_at_once_only_when_it_would_lapse_before_the_heartbeat(
    runner: QueuedRunner,
    dispatcher: InMemoryDispatcher,
    storage: InMemoryStorage,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running mark leaves the lease alone (it is a write PostgreSQL makes in place): the
    heartbeat renews it every third of the lease. A job that waited in the queue for more than
    half the lease renews it before its step runs, so the sweep does not take the instance
    over under the running step; a job taken at once costs no renewal."""
    renewed: list[str] = []
    renew = storage.renew

    def spy(instance_id: Any, owner: str, lease: timedelta) -> bool:
        renewed.append(owner)
        return renew(instance_id, owner, lease)

    monkeypatch.setattr(storage, "renew", spy)
    prompt = flows.IfElse.start({"script": {}})
    dispatcher.drain()
    assert flows.IfElse.get(prompt).status is Status.COMPLETED
    assert renewed == []
    late = flows.IfElse.start({"script": {}})
    [job] = dispatcher.take()
    clock.advance(seconds=20)  # 10 s of the 30 s lease left: less than the first beat needs
    owner = flows.IfElse.get(late).lease_owner
    dispatcher.run(job)
    assert renewed == [owner]
    assert flows.executions(late) == {"check": 1}
