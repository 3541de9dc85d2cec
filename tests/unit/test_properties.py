"""Properties of the engine over randomly generated valid workflows.

Workflows are generated as series-parallel shapes: sequences, fan-outs that
join, exclusive choices that merge, optionally with a branch that skips
straight to the join/merge, and steps that wait for an event. For any such
workflow and any choices and resume order:

- the run terminates and completes;
- no step runs twice;
- exactly the steps on the taken path run (none is skipped);
- every step runs after each of its predecessors that ran;
- the history and the completed steps agree.

Under a random retry policy, with steps that fail a random number of times first:

- no step runs more than ``max_attempts`` times;
- the instance completes when every step on the taken path fails fewer times than that (each
  failed attempt in the history), and fails, at a step that ran ``max_attempts`` times, when
  one does not.

Cancelled at any point, with or without compensation:

- no step runs afterwards, whatever is attempted (resumes, due timers, results of steps that
  were running);
- with compensation, exactly the completed steps are compensated, each once, the last
  completed first, and the instance ends cancelled.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Event, Retry, Status, Step
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from tests.support.engine import NOW, run_waves
from tests.support.properties import Built, Shape, build, draw_choices, policies, shapes


def expected_steps(built: Built, instance: Instance) -> set[str]:
    """The steps that must run, walking the graph along the choices taken."""
    graph = built.workflow.graph
    choices = instance.context.initial["choices"]
    seen: set[type[Step]] = set()
    frontier = [graph.start]
    while frontier:
        step = frontier.pop()
        if step in seen:
            continue
        seen.add(step)
        if step.terminal:
            continue
        event = choices.get(step.step_key, step.events[0])
        frontier.extend(graph.transitions[(step, event)].targets)
    return {step.__name__ for step in seen}


@settings(max_examples=150, deadline=None)
@given(shape=shapes, data=st.data())
def test_every_generated_workflow_runs_to_completion_correctly(shape: Shape, data: Any) -> None:
    built = build(shape)
    graph = built.workflow.graph
    choices = draw_choices(built, data)
    instance = run_waves(engine.start(engine.new_instance(built.workflow, {"choices": choices})))
    for _round in range(len(graph.order) + 1):
        if instance.status is not Status.WAITING:
            break
        waiting = graph.sorted(instance.waiting_steps)
        chosen = data.draw(st.sampled_from(waiting), label="resume")
        instance = run_waves(engine.resume(instance, "ok", now=NOW, step=chosen))

    assert instance.status is Status.COMPLETED
    ran = [entry.step for entry in instance.execution_history]
    assert all(count == 1 for count in built.runs.values()), built.runs
    assert len(ran) == len(set(ran)), "a step completed twice"
    assert {step.__name__ for step in ran} == expected_steps(built, instance)
    assert set(ran) == instance.completed_steps
    position = {step: index for index, step in enumerate(ran)}
    for step in ran:
        for predecessor in graph.predecessors[step]:
            if predecessor in position:
                assert position[predecessor] < position[step], (predecessor, step)


@settings(max_examples=150, deadline=None)
@given(shape=shapes, policy=policies, data=st.data())
def test_retries_never_run_a_step_more_than_max_attempts_times(
    shape: Shape, policy: Retry, data: Any
) -> None:
    built = build(shape, default_retry=policy)
    graph = built.workflow.graph
    choices = draw_choices(built, data)
    fails = {
        step.step_key: data.draw(st.integers(min_value=0, max_value=5), label=step.__name__)
        for step in graph.order
        if not step.terminal
    }
    start = engine.new_instance(built.workflow, {"choices": choices, "fails": fails})
    now = NOW
    instance = run_waves(engine.start(start), now=now)
    for _round in range(len(graph.order) * (policy.max_attempts + 1) + 1):
        if instance.status is not Status.WAITING:
            break
        events = [s for s, why in instance.waiting_steps.items() if why.attempt is None]
        due = engine.next_due_time(instance)
        if events and (due is None or data.draw(st.booleans(), label="resume first")):
            chosen = data.draw(st.sampled_from(graph.sorted(events)), label="resume")
            instance = run_waves(engine.resume(instance, "ok", now=now, step=chosen), now=now)
        else:
            assert due is not None
            now = max(now, due)
            instance = run_waves(engine.fire_due_timers(instance, now=now), now=now)

    assert all(count <= policy.max_attempts for count in built.runs.values()), built.runs
    on_path = expected_steps(built, instance) - {"Done"}
    doomed = {name for name in on_path if fails[_key(graph, name)] >= policy.max_attempts}
    failed_attempts = Counter(
        entry.step.__name__ for entry in instance.execution_history if entry.error is not None
    )
    if not doomed:
        assert instance.status is Status.COMPLETED
        for name in on_path:
            assert built.runs[name] == fails[_key(graph, name)] + 1, name
            assert failed_attempts[name] == fails[_key(graph, name)], name
        assert instance.attempts == {}
    else:
        assert instance.status is Status.FAILED
        assert instance.error is not None
        failed = instance.error.step.__name__
        assert failed in doomed
        assert built.runs[failed] == policy.max_attempts
        assert failed_attempts[failed] == policy.max_attempts - 1
        assert instance.attempts[instance.error.step] == policy.max_attempts


def _key(graph: Any, name: str) -> str:
    (step,) = [step for step in graph.order if step.__name__ == name]
    return str(step.step_key)


@settings(max_examples=150, deadline=None)
@given(shape=shapes, data=st.data())
def test_a_cancelled_instance_never_runs_a_step_again(shape: Shape, data: Any) -> None:
    built = build(shape, compensable=True)
    graph = built.workflow.graph
    choices = draw_choices(built, data)
    instance = engine.start(engine.new_instance(built.workflow, {"choices": choices}))
    cancel_at = data.draw(st.integers(min_value=0, max_value=len(graph.order)), label="cancel at")
    compensate = data.draw(st.booleans(), label="compensate")
    for _round in range(cancel_at):
        instance = run_waves(instance)
        if instance.status is not Status.WAITING:
            break
        waiting = graph.sorted(instance.waiting_steps)
        instance = engine.resume(instance, "ok", now=NOW, step=data.draw(st.sampled_from(waiting)))
    if instance.status in (Status.COMPLETED, Status.FAILED):
        return
    # the steps that were runnable when cancelled ran meanwhile: their results come back late
    late = [
        engine.Executed(activation.step, outcome=Event("ok"))
        for activation in engine.runnable(instance)
    ]
    completed = [entry.step.__name__ for entry in instance.execution_history]
    runs = Counter(built.runs)

    cancelled = run_waves(engine.cancel(instance, now=NOW, compensate=compensate))

    assert cancelled.status is Status.CANCELLED
    assert built.runs == runs, "a step ran after its instance was cancelled"
    expected = list(reversed(completed)) if compensate else []
    assert built.compensated == expected
    assert [late_result for late_result in late if engine.accepts(cancelled, late_result)] == []
    assert engine.runnable(cancelled) == []
    assert engine.fire_due_timers(cancelled, now=NOW + timedelta(days=365)) is cancelled
    assert not engine.waits_for_an_event(cancelled)
