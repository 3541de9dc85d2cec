"""LocalRunner and the Workflow facade, on InMemoryStorage (no database)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Done,
    Event,
    InstanceNotFound,
    SerializationError,
    Status,
    Step,
    Workflow,
)
from hephaestus_django.core.errors import BackendNotConfigured, EngineError, UnexpectedEventError
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import InMemoryStorage, LocalRunner, configure
from tests import flows


class RecordingStorage(InMemoryStorage):
    """Counts writes (``put`` and ``update``) and remembers the status each one stored."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[Status] = []

    def put(self, instance: Instance) -> None:
        super().put(instance)
        self.written.append(instance.status)

    def update(self, instance_id: Any, change: Any) -> Instance:
        statuses: list[Status] = []

        def recorded(current: Instance) -> Instance:
            changed: Instance = change(current)
            if changed is not current:
                statuses.append(changed.status)
            return changed

        result = super().update(instance_id, recorded)
        self.written.extend(statuses)
        return result


@pytest.fixture
def storage() -> Iterator[RecordingStorage]:
    storage = RecordingStorage()
    configure(storages={"default": storage}, runner=LocalRunner(max_workers=4))
    yield storage
    configure()


def test_start_runs_to_the_end_and_persists_after_every_wave(storage: RecordingStorage) -> None:
    instance_id = flows.IfElse.start({"script": {}})
    instance = flows.IfElse.get(instance_id)
    assert instance.status is Status.COMPLETED
    # one write when started, then one per wave: Check, Approve, Merge (with Done completed in it)
    assert storage.written == [Status.RUNNING] * 3 + [Status.COMPLETED]
    assert instance.revision == 4
    assert [entry.step for entry in instance.execution_history] == [
        flows.Check,
        flows.Approve,
        flows.Merge,
        Done,
    ]


def test_a_fan_out_wave_is_one_write(storage: RecordingStorage) -> None:
    flows.FanOut.start({"script": {}})
    # started, Split, [Pack, Charge, Notify] together, Join (with Done)
    assert len(storage.written) == 4


def test_a_resume_that_reaches_the_end_is_one_write(storage: RecordingStorage) -> None:
    class Sign(Workflow):
        start = flows.Signature
        transitions = {flows.Signature: {"signed": Done, "declined": flows.Declined}}

    instance_id = Sign.start({})
    # the start's one write settles the wait it reaches (a WaitForEvent is a built-in)
    assert storage.written == [Status.WAITING]
    instance = Sign.resume(instance_id, "declined")
    # the resume's locked write completes Declined (a Done) too
    assert storage.written == [Status.WAITING, Status.COMPLETED]
    assert instance.status is Status.COMPLETED
    assert [entry.step for entry in instance.execution_history] == [
        flows.Signature,
        flows.Declined,
    ]
    assert instance.lease_owner is None


def test_steps_after_a_resume_reach_done_in_the_last_wave(storage: RecordingStorage) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    flows.TwoWaits.resume(instance_id, "paid")
    del storage.written[:]
    instance = flows.TwoWaits.resume(instance_id, "signed")
    # the resume's locked write, Join, then Finish with Done completed in it
    assert storage.written == [Status.RUNNING, Status.RUNNING, Status.COMPLETED]
    assert instance.execution_history[-1].step is Done


def test_a_terminal_step_that_does_something_runs_in_a_wave_of_its_own(
    storage: RecordingStorage,
) -> None:
    ran: list[str] = []

    class Archive(Done):
        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            ran.append("archived")
            return None

    class Archived(Workflow):
        start = flows.Merge
        transitions = {flows.Merge: {"ok": Archive}}

    instance = Archived.start({"script": {}})
    assert ran == ["archived"]
    # started, Merge (leaving Archive runnable), Archive
    assert storage.written == [Status.RUNNING, Status.RUNNING, Status.COMPLETED]
    assert Archived.get(instance).status is Status.COMPLETED


def test_a_workflow_that_starts_at_its_end_is_written_once(storage: RecordingStorage) -> None:
    class Nothing(Workflow):
        start = flows.Declined
        transitions: dict[Any, Any] = {}

    instance = Nothing.get(Nothing.start({}))
    assert storage.written == [Status.COMPLETED]
    assert [entry.step for entry in instance.execution_history] == [flows.Declined]


def test_fan_out_branches_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=30)

    class Meet(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            barrier.wait()  # only passes if all three branches run at the same time
            return "ok"

    class MeetA(Meet):
        pass

    class MeetB(Meet):
        pass

    class MeetC(Meet):
        pass

    class Together(Workflow):
        start = flows.Split
        transitions = {
            flows.Split: {"ok": [MeetA, MeetB, MeetC]},
            MeetA: {"ok": flows.Join},
            MeetB: {"ok": flows.Join},
            MeetC: {"ok": flows.Join},
            flows.Join: {"ok": Done},
        }

    storage = InMemoryStorage()
    instance = LocalRunner(max_workers=3).start(Together, {}, storage=storage)
    assert instance.status is Status.COMPLETED, instance.error


def test_the_thread_pool_is_bounded() -> None:
    running, peak, lock = [0], [0], threading.Lock()
    release = threading.Event()

    class Busy(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                if running[0] == 2:
                    release.set()
            release.wait(timeout=30)
            with lock:
                running[0] -= 1
            return "ok"

    branches = [type(f"Busy{index}", (Busy,), {}) for index in range(4)]

    class Wide(Workflow):
        start = flows.Split
        transitions = {
            flows.Split: {"ok": branches},
            **{branch: {"ok": flows.Join} for branch in branches},
            flows.Join: {"ok": Done},
        }

    instance = LocalRunner(max_workers=2).start(Wide, {}, storage=InMemoryStorage())
    assert instance.status is Status.COMPLETED
    assert peak[0] == 2


def test_failure_in_one_branch_is_recorded(storage: RecordingStorage) -> None:
    instance_id = flows.FanOut.start({"script": {"charge": "fail"}})
    instance = flows.FanOut.get(instance_id)
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert (instance.error.step, instance.error.message) == (
        flows.Charge,
        "charge was told to fail",
    )
    assert {entry.step for entry in instance.execution_history} == {
        flows.Split,
        flows.Pack,
        flows.Notify,
    }


def test_resume_from_another_runner_and_storage_handle(storage: RecordingStorage) -> None:
    instance_id = flows.TwoWaits.start({"script": {}})
    other_process = LocalRunner()
    other_process.resume(instance_id, "paid", storage=storage)
    instance = flows.TwoWaits.resume(instance_id, "signed", {"by": "Ada"})
    assert instance.status is Status.COMPLETED
    assert instance.context.result("signature") == {"by": "Ada"}
    assert flows.executions(instance_id) == {"split": 1, "join": 1, "finish": 1}


def test_racing_resumes_of_one_waiting_step_let_exactly_one_win() -> None:
    storage = InMemoryStorage()
    instance = LocalRunner().start(flows.TwoWaits, {"script": {}}, storage=storage)
    outcomes: list[object] = []
    start = threading.Barrier(2, timeout=30)

    def resume() -> None:
        start.wait()
        try:
            LocalRunner().resume(instance.id, "paid", storage=storage)
            outcomes.append("ok")
        except EngineError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=resume) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1
    (error,) = [outcome for outcome in outcomes if outcome != "ok"]
    assert isinstance(error, UnexpectedEventError)
    assert [e.event for e in storage.get(instance.id).execution_history] == ["ok", "paid"]


def test_a_write_that_lost_a_race_is_reapplied_not_lost(caplog: pytest.LogCaptureFixture) -> None:
    """Another process resumes one branch while this one runs the other branch's step."""
    caplog.set_level(logging.INFO, logger="hephaestus_django.runner")
    storage = InMemoryStorage()
    runner = LocalRunner()

    class Slow(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            # Meanwhile, "another process" delivers the payment to the waiting branch.
            LocalRunner().resume(instance.id, "paid", storage=storage)
            return "ok"

    class Interleaved(Workflow):
        start = flows.Split
        transitions = {
            flows.Split: {"ok": [flows.Payment, flows.Pack]},
            flows.Pack: {"ok": Slow},
            Slow: {"ok": flows.Join},
            flows.Payment: {"paid": flows.Join},
            flows.Join: {"ok": Done},
        }

    instance = runner.start(Interleaved, {"script": {}}, storage=storage)
    stored = storage.get(instance.id)
    assert stored.status is Status.COMPLETED, stored.error
    assert [entry.step for entry in stored.execution_history] == [
        flows.Split,
        flows.Pack,
        flows.Payment,
        Slow,
        flows.Join,
        Done,
    ]
    assert flows.executions(instance.id) == {"split": 1, "pack": 1, "join": 1}
    assert "re-applying to a fresh read" in caplog.text


def test_timers_fire_from_storage_when_due() -> None:
    now = [datetime(2026, 11, 24, 12, 0, tzinfo=UTC)]
    storage = InMemoryStorage(clock=lambda: now[0])
    runner = LocalRunner()
    instance = runner.start(flows.Timed, {"script": {}}, storage=storage)
    assert instance.status is Status.WAITING
    assert instance.lease_owner is None  # nothing runnable: no runner holds it
    assert runner.work(storage=storage) == []
    now[0] += timedelta(minutes=5) - timedelta(microseconds=1)
    assert runner.work(storage=storage) == []  # not yet
    now[0] += timedelta(microseconds=1)
    restarted = LocalRunner()  # a new process after a restart
    (fired,) = restarted.work(storage=storage)
    assert fired.status is Status.COMPLETED
    assert fired.lease_owner is None
    assert restarted.work(storage=storage) == []


def test_an_unstorable_step_result_fails_that_step(storage: RecordingStorage) -> None:
    class Leaky(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            return Event("ok", updates={"handle": object()})

    class Leaking(Workflow):
        start = Leaky
        transitions = {Leaky: {"ok": Done}}

    instance = Leaking.get(Leaking.start())
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type == "hephaestus_django.core.errors.SerializationError"
    assert "context.steps.leaky.handle" in instance.error.message


@pytest.mark.parametrize("levels", [96, 97])
def test_a_step_result_nested_too_deep_for_the_state_fails_that_step(
    storage: RecordingStorage, levels: int
) -> None:
    deep: list[Any] = []
    for _ in range(levels - 1):
        deep = [deep]

    class Deep(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            return Event("ok", updates={"deep": deep})

    class Deepening(Workflow):
        start = Deep
        transitions = {Deep: {"ok": Done}}

    # The state, the history, its entry, the result dict: 4 containers, then the lists.
    instance = Deepening.get(Deepening.start())
    if 4 + levels <= 100:
        assert instance.status is Status.COMPLETED
        assert instance.context.steps["deep"] == {"deep": deep}
    else:
        assert instance.status is Status.FAILED
        assert instance.error is not None
        assert "nested more than 100" in instance.error.message
        assert "context.steps.deep.deep" in instance.error.message


def test_an_unstorable_context_writes_nothing(storage: RecordingStorage) -> None:
    with pytest.raises(SerializationError, match=r"context\.initial\.when"):
        flows.IfElse.start({"when": object()})
    assert storage.written == []
    assert len(storage) == 0


def test_retry_through_the_facade(storage: RecordingStorage) -> None:
    attempts: list[int] = []

    class Flaky(Step):
        events = ("ok",)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            attempts.append(1)
            if len(attempts) == 1:
                raise TimeoutError("carrier API timed out")
            return "ok"

    class Shipping(Workflow):
        start = Flaky
        transitions = {Flaky: {"ok": Done}}

    instance_id = Shipping.start()
    assert Shipping.get(instance_id).status is Status.FAILED
    assert Shipping.retry(instance_id).status is Status.COMPLETED


def test_facade_get_and_list_are_scoped_to_the_workflow(storage: RecordingStorage) -> None:
    if_else = flows.IfElse.start({"script": {}})
    two_waits = flows.TwoWaits.start({"script": {}})
    with pytest.raises(InstanceNotFound, match="instance of TwoWaits, not IfElse"):
        flows.IfElse.get(two_waits)
    with pytest.raises(InstanceNotFound):
        flows.IfElse.resume(two_waits, "paid")
    assert [i.id for i in flows.IfElse.list()] == [if_else]
    assert [i.id for i in Workflow.list()] == [if_else, two_waits]
    assert [i.id for i in Workflow.list(status="waiting")] == [two_waits]
    assert Workflow.get(two_waits).workflow is flows.TwoWaits


def test_start_with_a_chosen_id(storage: RecordingStorage) -> None:
    chosen = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert str(flows.IfElse.start({"script": {}}, id=chosen)) == chosen


def test_storage_can_be_passed_as_an_object() -> None:
    storage = InMemoryStorage()
    instance_id = flows.IfElse.start({"script": {}}, storage=storage)
    assert flows.IfElse.get(instance_id, storage=storage).status is Status.COMPLETED


def test_an_unknown_storage_alias_is_a_clear_error(storage: RecordingStorage) -> None:
    with pytest.raises(BackendNotConfigured, match="'tenant_b'"):
        flows.IfElse.start({}, storage="tenant_b")


class CardDeclined(Exception):
    """A business outcome, not a bug."""


def test_expected_errors_fail_the_step_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Charge(Step):
        events = ("ok",)
        expected_errors = (CardDeclined,)

        def execute(self, instance: Any, config: Any, context: Any) -> Any:
            if context.initial["card"] == "declined":
                raise CardDeclined("declined by the issuer")
            raise ValueError("a bug")

    class Pay(Workflow):
        start = Charge
        transitions = {Charge: {"ok": Done}}

    runner, storage = LocalRunner(), InMemoryStorage()
    with caplog.at_level(logging.WARNING, logger="hephaestus_django.runner"):
        declined = runner.start(Pay, {"card": "declined"}, storage=storage)
        buggy = runner.start(Pay, {"card": "ok"}, storage=storage)
    assert declined.status is Status.FAILED
    assert declined.error is not None
    assert declined.error.error_type == "tests.unit.test_runner.CardDeclined"
    assert buggy.status is Status.FAILED
    quiet, loud = caplog.records
    assert "CardDeclined: declined by the issuer" in quiet.getMessage()
    assert not quiet.exc_info
    assert loud.exc_info


def test_expected_errors_must_be_exception_classes() -> None:
    from hephaestus_django.core.errors import StepDefinitionError

    with pytest.raises(StepDefinitionError, match="expected_errors must be a tuple"):
        type("Odd", (Step,), {"events": ("ok",), "expected_errors": ValueError})


def test_an_operation_on_a_stale_view_is_refused() -> None:
    from hephaestus_django import StaleInstanceError

    storage, runner = InMemoryStorage(), LocalRunner()
    seen = runner.start(flows.TwoWaits, {"script": {}}, storage=storage)
    runner.resume(seen.id, "paid", storage=storage)  # someone else acts meanwhile
    with pytest.raises(StaleInstanceError, match="reload it"):
        runner.resume(seen.id, "signed", storage=storage, expected_revision=seen.revision)
    assert storage.get(seen.id).waiting_steps.keys() == {flows.Signature}
    fresh = storage.get(seen.id)
    done = runner.resume(seen.id, "signed", storage=storage, expected_revision=fresh.revision)
    assert done.status is Status.COMPLETED
