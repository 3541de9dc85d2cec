"""The engine's rules, as tables of cases, on the pure engine (no runner, no storage)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Async,
    Done,
    Event,
    Route,
    Status,
    Step,
    Wait,
    WaitForEvent,
    Workflow,
)
from hephaestus_django.core import engine
from hephaestus_django.core.engine import Executed
from hephaestus_django.core.errors import (
    EngineError,
    InstanceNotWaitingError,
    InvalidInstanceError,
    UnexpectedEventError,
)
from hephaestus_django.core.instance import (
    TRACEBACK_CHARS,
    TRACEBACK_FRAMES,
    Context,
    Instance,
    format_traceback,
)
from tests import flows
from tests.support.engine import NOW, run_waves, started


def history(instance: Instance) -> list[str]:
    return [entry.step.__name__ for entry in instance.execution_history]


RUNS = [
    pytest.param(
        flows.IfElse,
        {},
        [],
        Status.COMPLETED,
        ["Check", "Approve", "Merge", "Done"],
        id="if-valid-merges-once",
    ),
    pytest.param(
        flows.IfElse,
        {"check": "invalid"},
        [],
        Status.COMPLETED,
        ["Check", "Reject", "Merge", "Done"],
        id="else-merges-once",
    ),
    pytest.param(
        flows.FanOut,
        {},
        [],
        Status.COMPLETED,
        ["Split", "Pack", "Charge", "Notify", "Join", "Done"],
        id="fan-out-joins-once-after-all",
    ),
    pytest.param(
        flows.Uneven,
        {},
        [],
        Status.COMPLETED,
        ["Split", "Pack", "Charge", "Weigh", "Label", "Join", "Done"],
        id="join-waits-for-the-longer-branch",
    ),
    pytest.param(
        flows.FanOut,
        {"charge": "wait"},
        [],
        Status.WAITING,
        ["Split", "Pack", "Notify"],
        id="join-waits-for-waiting-branch",
    ),
    pytest.param(
        flows.FanOut,
        {"charge": "wait"},
        [("ok", None)],
        Status.COMPLETED,
        ["Split", "Pack", "Notify", "Charge", "Join", "Done"],
        id="resumed-branch-releases-join",
    ),
    pytest.param(
        flows.TwoWaits,
        {},
        [("paid", None)],
        Status.WAITING,
        ["Split", "Payment"],
        id="one-of-two-waits-resumed",
    ),
    pytest.param(
        flows.TwoWaits,
        {},
        [("paid", None), ("signed", {"by": "Ada"})],
        Status.COMPLETED,
        ["Split", "Payment", "Signature", "Join", "Finish", "Done"],
        id="both-waits-resumed",
    ),
    pytest.param(
        flows.TwoWaits,
        {},
        [("declined", None), ("paid", None)],
        Status.COMPLETED,
        ["Split", "Signature", "Payment", "Join", "Finish", "Done"],
        id="resumed-in-other-order",
    ),
    pytest.param(
        flows.IfElse,
        {"approve": "fail"},
        [],
        Status.FAILED,
        ["Check"],
        id="failure-stops-all",
    ),
    pytest.param(
        flows.FanOut,
        {"charge": "fail"},
        [],
        Status.FAILED,
        ["Split", "Pack", "Notify"],
        id="failed-branch-keeps-siblings-results",
    ),
    pytest.param(
        flows.Routed,
        {},
        [],
        Status.COMPLETED,
        ["Check", "Notify", "Merge", "Done"],
        id="route-default-lane",
    ),
    pytest.param(
        flows.Routed,
        {"check": "invalid"},
        [],
        Status.COMPLETED,
        ["Check", "Declined"],
        id="exclusive-branch-to-other-end",
    ),
]


@pytest.mark.parametrize(("workflow", "script", "resumes", "status", "steps"), RUNS)
def test_runs(
    workflow: type[Workflow],
    script: dict[str, str],
    resumes: list[tuple[str, Any]],
    status: Status,
    steps: list[str],
) -> None:
    instance = started(workflow, script)
    for event, data in resumes:
        instance = run_waves(engine.resume(instance, event, data, now=NOW))
    assert instance.status is status
    assert history(instance) == steps
    assert len(history(instance)) == len(set(history(instance))), "a step ran twice"
    assert {entry.step for entry in instance.execution_history} == instance.completed_steps
    if status is Status.COMPLETED:
        assert not instance.active_steps
        assert not instance.waiting_steps


def test_route_follows_the_context() -> None:
    instance = started(flows.Routed, lane="pack")
    assert history(instance) == ["Check", "Pack", "Merge", "Done"]


def test_results_and_initial_context() -> None:
    instance = started(flows.TwoWaits)
    instance = run_waves(engine.resume(instance, "signed", {"by": "Ada"}, now=NOW))
    assert instance.context.initial == {"script": {}}
    assert instance.context.result(flows.Signature) == {"by": "Ada"}
    assert instance.context.steps["split"] == {"ran": "split"}
    entry = instance.execution_history[1]
    assert (entry.step, entry.event, entry.context_updates) == (
        flows.Signature,
        "signed",
        {"by": "Ada"},
    )
    assert entry.next_steps == (flows.Join,)


def test_waiting_instance_lists_every_waiting_step() -> None:
    instance = started(flows.TwoWaits)
    assert instance.status is Status.WAITING
    assert set(instance.waiting_steps) == {flows.Signature, flows.Payment}
    assert instance.active_steps == {flows.Signature, flows.Payment}
    assert instance.current_step is flows.Signature


def test_failure_records_type_message_and_step() -> None:
    instance = started(flows.FanOut, {"charge": "fail"})
    assert instance.error is not None
    assert instance.error.step is flows.Charge
    assert instance.error.error_type == "tests.flows.StepFailed"
    assert instance.error.message == "charge was told to fail"
    assert instance.current_step is flows.Charge
    assert flows.Join not in instance.active_steps
    assert engine.runnable(instance) == []


def raised(error: BaseException) -> BaseException:
    """``error`` after it was raised and caught, as a runner hands it to the engine."""
    try:
        raise error
    except BaseException as caught:
        return caught


def recurse(depth: int) -> None:
    if depth == 0:
        raise ValueError("x" * 300)
    recurse(depth - 1)


def test_a_failure_keeps_where_the_error_was_raised() -> None:
    instance = started(flows.FanOut, {"charge": "fail"})
    assert instance.error is not None
    assert instance.error.traceback is not None
    lines = instance.error.traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any(line.strip().startswith('File "') and "flows.py" in line for line in lines)
    assert lines[-1] == "tests.flows.StepFailed: charge was told to fail"


def test_a_failures_traceback_shows_its_cause() -> None:
    try:
        try:
            {}["sku"]
        except KeyError as missing:
            raise RuntimeError("lookup failed") from missing
    except RuntimeError as error:
        text = format_traceback(error)
    assert text is not None
    assert "KeyError: 'sku'" in text
    assert "The above exception was the direct cause" in text
    assert text.endswith("RuntimeError: lookup failed")


def test_an_error_never_raised_has_no_traceback() -> None:
    assert format_traceback(TimeoutError("step timed out")) is None
    failed = engine.apply(
        engine.start(engine.new_instance(flows.FanOut, {"script": {}})),
        [Executed(flows.Split, error=TimeoutError("step timed out"))],
        now=NOW,
    )
    assert failed.error is not None
    assert failed.error.traceback is None


def test_a_deep_traceback_keeps_its_innermost_frames_within_the_size_limit() -> None:
    try:
        recurse(500)
    except ValueError as error:
        text = format_traceback(error)
    assert text is not None
    frames = re.findall(r'^  File "', text, flags=re.MULTILINE)
    assert 0 < len(frames) <= TRACEBACK_FRAMES
    assert "test_a_deep_traceback" not in text  # the outermost frames are left out
    assert text.endswith("ValueError: " + "x" * 300)


def test_a_huge_message_keeps_the_traceback_within_the_size_limit() -> None:
    text = format_traceback(raised(ValueError("y" * 100_000)))
    assert text is not None
    assert len(text) <= TRACEBACK_CHARS
    first, *_rest = text.splitlines()
    assert re.fullmatch(r"\[\d+ characters of the traceback left out\]", first)
    assert text.endswith("y" * 1000)


def test_characters_jsonb_cannot_hold_are_escaped_in_a_traceback() -> None:
    text = format_traceback(raised(ValueError("nul \x00 and \ud800 here")))
    assert text is not None
    assert text.endswith("ValueError: nul \\u0000 and \\ud800 here")
    assert "\x00" not in text


def test_an_error_whose_str_fails_still_gets_a_traceback() -> None:
    class Hostile(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    text = format_traceback(raised(Hostile()))
    assert text is not None
    assert text.endswith("Hostile: <exception str() failed>")


def test_retry_reruns_the_failed_step_then_continues() -> None:
    attempts: list[int] = []

    class Flaky(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("payment gateway timed out")
            return "ok"

    class Retried(Workflow):
        start = Flaky
        transitions = {Flaky: {"ok": Done}}

    instance = run_waves(engine.start(engine.new_instance(Retried)))
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type == "ConnectionError"
    instance = run_waves(engine.retry(instance))
    assert instance.status is Status.COMPLETED
    assert instance.error is None
    # the failure retry() cleared stays on record, as a failed attempt
    assert history(instance) == ["Flaky", "Flaky", "Done"]
    assert [entry.failed for entry in instance.execution_history] == [True, False, False]


ILLEGAL = [
    pytest.param(
        flows.IfElse,
        {},
        "ok",
        InstanceNotWaitingError,
        "is completed and waits for nothing",
        id="resume-completed",
    ),
    pytest.param(
        flows.IfElse,
        {"approve": "fail"},
        "ok",
        InstanceNotWaitingError,
        "is failed",
        id="resume-failed",
    ),
    pytest.param(
        flows.TwoWaits,
        {},
        "shipped",
        UnexpectedEventError,
        "no waiting step declares it",
        id="undeclared-event",
    ),
]


@pytest.mark.parametrize(("workflow", "script", "event", "error", "fragment"), ILLEGAL)
def test_illegal_resumes_change_nothing(
    workflow: type[Workflow],
    script: dict[str, str],
    event: str,
    error: type[Exception],
    fragment: str,
) -> None:
    instance = started(workflow, script)
    before = (instance.status, instance.execution_history, instance.active_steps)
    with pytest.raises(error, match=fragment) as caught:
        engine.resume(instance, event, now=NOW)
    assert str(instance.id) in str(caught.value)
    assert (instance.status, instance.execution_history, instance.active_steps) == before


def test_ambiguous_resume_needs_a_step() -> None:
    class Either(WaitForEvent):
        events = ("go",)

    class Other(WaitForEvent):
        events = ("go",)

    class Twin(Workflow):
        start = flows.Split
        transitions = {
            flows.Split: {"ok": [Either, Other]},
            Either: {"go": flows.Join},
            Other: {"go": flows.Join},
            flows.Join: {"ok": Done},
        }

    instance = started(Twin)
    with pytest.raises(UnexpectedEventError, match="pass step="):
        engine.resume(instance, "go", now=NOW)
    instance = run_waves(engine.resume(instance, "go", now=NOW, step=Other))
    assert history(instance) == ["Split", "Other"]
    instance = run_waves(engine.resume(instance, "go", now=NOW, step="either"))
    assert instance.status is Status.COMPLETED


def test_timer_fires_when_due_and_not_before() -> None:
    instance = started(flows.Timed)
    assert instance.status is Status.WAITING
    assert instance.waiting_steps[Wait].resume_at == NOW + timedelta(minutes=5)
    assert engine.next_due_time(instance) == NOW + timedelta(minutes=5)
    early = engine.fire_due_timers(instance, now=NOW + timedelta(minutes=4))
    assert early is instance
    fired = run_waves(engine.fire_due_timers(instance, now=NOW + timedelta(minutes=5)))
    assert fired.status is Status.COMPLETED
    assert fired.execution_history[-2].event == "timeout"


def test_step_outcome_errors_fail_the_step() -> None:
    class Liar(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            return "not-declared"

    class Lying(Workflow):
        start = Liar
        transitions = {Liar: {"ok": Done}}

    instance = run_waves(engine.start(engine.new_instance(Lying)))
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type == "hephaestus_django.core.errors.StepOutcomeError"
    assert "returned event 'not-declared', which it does not declare (declared: ok)" in (
        instance.error.message
    )


def test_route_choosing_an_undeclared_target_fails_the_step() -> None:
    from hephaestus_django import Route

    class Chooser(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            return "ok"

    class Stray(Workflow):
        start = Chooser
        transitions = {
            Chooser: {"ok": Route(lambda context: flows.Merge, [flows.Pack, flows.Notify])},
            flows.Pack: {"ok": Done},
            flows.Notify: {"ok": Done},
        }

    instance = run_waves(engine.start(engine.new_instance(Stray)))
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert "not one of its targets (Pack, Notify)" in instance.error.message


def test_metadata_updates_are_merged() -> None:
    class Tagger(Step):
        events = ("ok",)

        def execute(self, instance: Instance, config: Any, context: Any) -> Any:
            return Event("ok", metadata={"attempt": 2})

    class Tagged(Workflow):
        start = Tagger
        transitions = {Tagger: {"ok": Done}}

    instance = engine.new_instance(Tagged, {}, metadata={"source": "api"})
    instance = run_waves(engine.start(instance))
    assert instance.runtime_metadata == {"source": "api", "attempt": 2}
    assert instance.execution_history[0].metadata_updates == {"attempt": 2}


def test_engine_never_changes_its_input() -> None:
    instance = engine.start(engine.new_instance(flows.IfElse, {"script": {}}))
    snapshot = (instance.status, instance.active_steps, instance.execution_history)
    run_waves(instance)
    assert (instance.status, instance.active_steps, instance.execution_history) == snapshot


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"id": "not-a-uuid"}, "must be a UUID"),
        ({"id": 42}, "must be a UUID"),
    ],
)
def test_new_instance_refuses_bad_ids(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInstanceError, match=fragment):
        engine.new_instance(flows.IfElse, {}, **kwargs)


def test_new_instance_refuses_a_non_dict_context() -> None:
    with pytest.raises(InvalidInstanceError, match="must be a dict, not list"):
        engine.new_instance(flows.IfElse, [1, 2])  # type: ignore[arg-type]


def test_only_pending_instances_start() -> None:
    instance = engine.start(engine.new_instance(flows.IfElse))
    with pytest.raises(EngineError, match="only a pending instance can be started"):
        engine.start(instance)


def test_only_failed_instances_retry() -> None:
    instance = started(flows.IfElse)
    with pytest.raises(EngineError, match="only a failed instance can be retried"):
        engine.retry(instance)


def test_runnable_steps_are_the_runnable_steps_unordered() -> None:
    instance = engine.start(engine.new_instance(flows.FanOut, {"script": {}}))
    assert engine.runnable_steps(instance) == {flows.Split}
    instance = engine.apply(instance, [Executed(flows.Split, Event("ok"))], now=NOW)
    instance = engine.apply(instance, [Executed(flows.Pack, Async())], now=NOW)
    assert instance.waiting_steps.keys() == {flows.Pack}
    expected = {activation.step for activation in engine.runnable(instance)}
    assert engine.runnable_steps(instance) == expected == {flows.Charge, flows.Notify}
    failed = engine.apply(instance, [Executed(flows.Charge, error=ValueError("no"))], now=NOW)
    assert engine.runnable_steps(failed) == frozenset()


def test_a_route_sees_its_steps_result_and_not_a_later_siblings() -> None:
    seen: list[Context] = []

    def by_lane(context: Context) -> type[Step]:
        seen.append(context)
        return flows.Pack if context.result(flows.Check)["lane"] == "pack" else flows.Notify

    class Lanes(Workflow):
        start = flows.Split
        transitions = {
            flows.Split: {"ok": [flows.Check, flows.Charge]},
            flows.Check: {
                "valid": Route(by_lane, [flows.Pack, flows.Notify]),
                "invalid": flows.Notify,
            },
            flows.Pack: {"ok": flows.Join},
            flows.Notify: {"ok": flows.Join},
            flows.Charge: {"ok": flows.Join},
            flows.Join: {"ok": Done},
        }

    instance = engine.start(engine.new_instance(Lanes))
    instance = engine.apply(instance, [Executed(flows.Split, Event("ok"))], now=NOW)
    before = dict(instance.context.steps)
    wave = [
        Executed(flows.Charge, Event("ok", updates={"paid": True})),
        Executed(flows.Check, Event("valid", updates={"lane": "pack"})),
    ]
    after = engine.apply(instance, wave, now=NOW)
    assert after.execution_history[-2].next_steps == (flows.Pack,)
    ((context,),) = [seen]
    assert dict(context.steps) == {**before, "check": {"lane": "pack"}}
    assert dict(after.context.steps) == {
        **before,
        "check": {"lane": "pack"},
        "charge": {"paid": True},
    }
    assert dict(instance.context.steps) == before  # the input is not changed
