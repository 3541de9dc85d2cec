"""Every rule of a workflow definition has its own error, naming workflow and steps."""

from __future__ import annotations

from typing import Any

import pytest

from hephaestus_django import (
    Done,
    Route,
    Step,
    StepRef,
    Wait,
    WaitForEvent,
    Workflow,
    WorkflowDefinitionError,
)
from hephaestus_django.core.errors import StepDefinitionError
from tests.support.steps import GraphOnly


class A(GraphOnly):
    events = ("ok",)


class B(GraphOnly):
    events = ("ok",)


class C(GraphOnly):
    events = ("ok",)


class D(GraphOnly):
    events = ("ok",)


class Fork(GraphOnly):
    events = ("yes", "no")


class Silent(GraphOnly):
    """Declares no events and is not terminal."""


class OtherA(GraphOnly):
    events = ("ok",)
    step_key = "a"


class Closing(Done):
    pass


def define(start: Any, transitions: Any, **attrs: Any) -> type[Workflow]:
    """Run a class statement for a workflow named ``Broken``."""
    return type("Broken", (Workflow,), {"start": start, "transitions": transitions, **attrs})


CASES = [
    pytest.param(None, {A: {"ok": Done}}, "malformed-start", (), "no start step", id="no-start"),
    pytest.param("A", {A: {"ok": Done}}, "malformed-start", (), "start must be a Step", id="start"),
    pytest.param(A, [A, Done], "malformed-transitions", (), "must be a dict", id="not-a-dict"),
    pytest.param(
        A, {"A": {"ok": Done}}, "malformed-transitions", (), "keys must be Step", id="key"
    ),
    pytest.param(A, {A: {"ok": 42}}, "malformed-transitions", (), "not 42", id="target"),
    pytest.param(
        A, {A: {"ok": []}}, "malformed-transitions", ("A",), "names no target", id="empty"
    ),
    pytest.param(
        A,
        {A: {"ok": [B, B]}, B: {"ok": Done}},
        "malformed-transitions",
        ("B", "B"),
        "names a step twice",
        id="repeated-target",
    ),
    pytest.param(
        A,
        {A: {"ok": Done, "oops": Done}},
        "undeclared-event",
        ("A",),
        "does not declare the event 'oops'",
        id="undeclared-event",
    ),
    pytest.param(
        Fork,
        {Fork: {"yes": Done}},
        "unhandled-event",
        ("Fork",),
        "declares 'no' but the transitions say nothing",
        id="unhandled-event",
    ),
    pytest.param(
        A,
        {A: {"ok": B}},
        "unhandled-event",
        ("B",),
        "declares 'ok'",
        id="target-without-transitions",
    ),
    pytest.param(
        A,
        {A: {"ok": Silent}},
        "dead-end",
        ("Silent",),
        "never reach Done",
        id="dead-end",
    ),
    pytest.param(
        A,
        {A: {"ok": B}, B: {"ok": C}, C: {"ok": B}},
        "cycle",
        ("B", "C"),
        "cycle B -> C -> B",
        id="cycle",
    ),
    pytest.param(A, {A: {"ok": A}}, "cycle", ("A",), "cycle A -> A", id="self-loop"),
    pytest.param(
        A,
        {A: {"ok": Done}, B: {"ok": Done}},
        "unreachable-step",
        ("B",),
        "cannot be reached from the start step A",
        id="unreachable",
    ),
    pytest.param(
        A,
        {A: {"ok": OtherA}, OtherA: {"ok": Done}},
        "duplicate-step-key",
        ("A", "OtherA"),
        "context key 'a'",
        id="duplicate-key",
    ),
    pytest.param(
        A,
        {A: {"ok": [B, C]}, B: {"ok": Done}, C: {"ok": Done}},
        "fan-out-not-converging",
        ("A", "B", "C"),
        "does not converge before Done",
        id="fan-out-to-done",
    ),
    pytest.param(
        A,
        {A: {"ok": [B, C]}, B: {"ok": D}, C: {"ok": Closing}, D: {"ok": Done}},
        "fan-out-not-converging",
        ("A", "B", "C"),
        "does not converge",
        id="fan-out-two-ends",
    ),
    pytest.param(
        A,
        {A: {"ok": Wait}, Wait: {"timeout": Done}},
        "invalid-config",
        ("Wait",),
        "duration",
        id="wait-without-duration",
    ),
    pytest.param(
        A,
        {A: {"ok": Wait.configure(duration=1, unit="fortnights")}, Wait: {"timeout": Done}},
        "invalid-config",
        ("Wait",),
        "unknown 'unit' 'fortnights'",
        id="wait-bad-unit",
    ),
    pytest.param(
        A,
        {
            A: {"ok": WaitForEvent.configure(timeout={"duration": 1})},
            WaitForEvent: {"received": Done},
        },
        "invalid-config",
        ("WaitForEvent",),
        "must declare the event 'timeout'",
        id="timeout-event",
    ),
    pytest.param(
        A,
        {
            A: {"ok": [Wait.configure(duration=1), B]},
            B: {"ok": Wait.configure(duration=2)},
            Wait: {"timeout": Done},
        },
        "conflicting-config",
        ("Wait",),
        "one config per workflow",
        id="conflicting-config",
    ),
    pytest.param(
        A,
        {A: {"ok": Closing}, Closing: {"done": Done}},
        "undeclared-event",
        ("Closing",),
        "does not declare the event 'done'",
        id="terminal-has-no-events",
    ),
]


@pytest.mark.parametrize(("start", "transitions", "rule", "steps", "fragment"), CASES)
def test_each_rule_has_its_own_error(
    start: Any, transitions: Any, rule: str, steps: tuple[str, ...], fragment: str
) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        define(start, transitions)
    error = caught.value
    assert error.rule == rule
    assert error.steps == steps
    assert fragment in str(error)
    assert str(error).startswith(f"{__name__}.Broken: ")
    assert error.workflow == f"{__name__}.Broken"


def test_terminal_step_with_transitions_is_refused() -> None:
    class Tail(Done):
        events = ()

    # A terminal step declares no events, so any transition from it names an undeclared event;
    # a terminal step that sneaks events in is refused when the step class is defined.
    with pytest.raises(StepDefinitionError, match=r"terminal step .*declares events"):
        type("LoudDone", (Done,), {"events": ("done",)})
    assert Tail.terminal


def test_the_rules_accept_a_full_featured_workflow() -> None:
    def pick(context: Any) -> type[Step]:
        return C

    class Full(Workflow):
        version = 3
        start = Fork
        transitions = {
            Fork: {"yes": [A, B], "no": Route(pick, [C, D])},
            A: {"ok": Wait.configure(duration=2, unit="hours")},
            B: {"ok": Wait.configure(duration=2, unit="hours")},
            Wait: {"timeout": Done},
            C: {"ok": Done},
            D: {"ok": Closing},
        }

    assert Full.start_step is Fork
    assert Full.graph.order[0] is Fork
    assert Full.graph.configs[Wait] == {"duration": 2, "unit": "hours"}
    assert Full.graph.predecessors[Wait] == {A, B}
    assert isinstance(Full.start, type(Workflow.start))  # `start` is the runtime verb again


@pytest.mark.parametrize(
    ("attrs", "fragment"),
    [
        ({"events": "ok"}, "events must be a tuple of strings"),
        ({"events": ("ok", "")}, "non-empty strings"),
        ({"events": ("ok", "ok")}, "repeat a name"),
        ({"events": ("ok",), "step_key": ""}, "step_key must be a non-empty string"),
    ],
)
def test_malformed_steps_fail_when_defined(attrs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(StepDefinitionError, match=fragment):
        type("BadStep", (Step,), attrs)


@pytest.mark.parametrize("version", [0, -1, True, "2"])
def test_version_must_be_a_positive_int(version: object) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        define(A, {A: {"ok": Done}}, version=version)
    assert caught.value.rule == "invalid-version"


def test_step_ref_config_is_read_only() -> None:
    ref = Wait.configure(duration=1)
    assert isinstance(ref, StepRef)
    with pytest.raises(TypeError):
        ref.config["duration"] = 2  # type: ignore[index]


def test_abstract_workflows_are_not_validated() -> None:
    class Base(Workflow):
        abstract = True

    assert Base.is_abstract()


def test_the_graph_sorts_steps_in_topological_order_unknown_ones_last() -> None:
    class Sorted(Workflow):
        start = Fork
        transitions = {
            Fork: {"yes": [A, B], "no": C},
            A: {"ok": C},
            B: {"ok": C},
            C: {"ok": Done},
        }

    graph = Sorted.graph
    assert graph.sorted([Done, B, D, Fork, C, A]) == [Fork, A, B, C, Done, D]
    unknown = {D, Closing}
    assert graph.sorted(unknown) == list(unknown)  # in the order given
    assert graph.sorted(iter([B])) == [B]
    assert graph.sorted([]) == []


# --- start_step: the spelling that type-checks ------------------------------------------------


def test_start_step_names_the_start_step() -> None:
    class Spelled(Workflow):
        start_step = Fork
        transitions = {Fork: {"yes": A, "no": B}, A: {"ok": Done}, B: {"ok": Done}}

    assert Spelled.start_step is Fork
    assert Spelled.graph.start is Fork
    assert isinstance(Spelled.start, type(Workflow.start))


def test_start_step_takes_a_configured_step() -> None:
    class Delayed(Workflow):
        start_step = Wait.configure(duration=2, unit="hours")
        transitions = {Wait: {"timeout": Done}}

    assert Delayed.start_step is Wait
    assert Delayed.graph.configs[Wait] == {"duration": 2, "unit": "hours"}


def test_start_and_start_step_may_both_name_the_same_step() -> None:
    same = define(A, {A: {"ok": Done}}, start_step=A)
    assert same.start_step is A
    configured = define(
        Wait.configure(duration=1), {Wait: {"timeout": Done}}, start_step=Wait.configure(duration=1)
    )
    assert configured.graph.configs[Wait] == {"duration": 1}


@pytest.mark.parametrize(
    ("start", "start_step", "named"),
    [
        (A, B, "start_step = B and start = A"),
        (Wait.configure(duration=1), Wait.configure(duration=2), "start_step = Wait and start"),
        (Wait, Wait.configure(duration=2), "start_step = Wait and start = Wait"),
    ],
    ids=["two-steps", "two-configs", "config-and-none"],
)
def test_start_and_start_step_naming_different_steps_is_an_error(
    start: Any, start_step: Any, named: str
) -> None:
    with pytest.raises(WorkflowDefinitionError) as caught:
        define(start, {A: {"ok": Done}, B: {"ok": Done}}, start_step=start_step)
    assert caught.value.rule == "malformed-start"
    assert named in str(caught.value)
    assert "set only start_step" in str(caught.value)


def test_a_subclass_inherits_or_replaces_the_start_step() -> None:
    class Parent(Workflow):
        start_step = A
        transitions = {A: {"ok": Done}}

    class SameStart(Parent):
        pass

    class OtherStart(Parent):
        start_step = Fork
        transitions = {Fork: {"yes": A, "no": B}, A: {"ok": Done}, B: {"ok": Done}}

    assert SameStart.graph.start is A
    assert OtherStart.graph.start is Fork


def test_a_malformed_start_step_is_named_as_written() -> None:
    with pytest.raises(WorkflowDefinitionError, match="start_step must be a Step"):
        type("Broken", (Workflow,), {"start_step": "A", "transitions": {A: {"ok": Done}}})
    with pytest.raises(WorkflowDefinitionError, match="start must be a Step"):
        define("A", {A: {"ok": Done}})
