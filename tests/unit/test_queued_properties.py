"""QueuedRunner against LocalRunner over randomly generated workflows and job deliveries.

A job engine delivers jobs at least once, in any order, sometimes late. For any
series-parallel workflow of :mod:`tests.support.properties` and any such
delivery (jobs shuffled, some run twice, some held back and run later), the
queued run ends in the state a ``LocalRunner`` reaches: the same status, the
same completed steps and results, each step completed once in the history.

Under a random retry policy, with steps that fail a random number of times first, both runners
end alike too (the same history of failed attempts and completions, when the instance
completes; the same status when it fails), and neither runs a step more than ``max_attempts``
times.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Retry, Status
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.dispatch import Job, WakeUp
from tests.support.engine import NOW
from tests.support.properties import Built, build, draw_choices, policies, shapes
from tests.timers import Clock

HOLD_BACKS = 2
"""How often one job may be held back: a late job still comes, eventually."""


def _local_run(built: Built, choices: dict[str, str]) -> Instance:
    configure(storages={"default": InMemoryStorage()}, runner=LocalRunner(max_workers=1))
    instance_id = built.workflow.start({"choices": choices})
    instance = built.workflow.get(instance_id)
    while instance.status is Status.WAITING:
        first = built.workflow.graph.sorted(instance.waiting_steps)[0]
        instance = built.workflow.resume(instance_id, "ok", step=first)
    return built.workflow.get(instance_id)


def _queued_run(built: Built, choices: dict[str, str], data: Any) -> Instance:
    dispatcher = InMemoryDispatcher()
    configure(storages={"default": InMemoryStorage()}, runner=QueuedRunner(dispatcher=dispatcher))
    instance_id = built.workflow.start({"choices": choices})
    held: list[Job] = []
    holds: Counter[Job] = Counter()
    for _round in range(200):
        jobs = dispatcher.take() + held
        held = []
        if not jobs:
            if not _resume_one(built, instance_id, data):
                break
            continue
        for job in data.draw(st.permutations(jobs), label="delivery order"):
            how = data.draw(st.sampled_from(["once", "twice", "later"]), label=str(job))
            if how == "later" and holds[job] < HOLD_BACKS:
                holds[job] += 1
                held.append(job)
                continue
            dispatcher.run(job)
            if how == "twice":
                dispatcher.run(job)
    return built.workflow.get(instance_id)


def _resume_one(built: Built, instance_id: UUID, data: Any) -> bool:
    instance = built.workflow.get(instance_id)
    if instance.status is not Status.WAITING:
        return False
    waiting = built.workflow.graph.sorted(instance.waiting_steps)
    chosen = data.draw(st.sampled_from(waiting), label="resume")
    built.workflow.resume(instance_id, "ok", step=chosen)
    return True


def _outcome(instance: Instance) -> tuple[Any, ...]:
    history = Counter((entry.step, entry.event) for entry in instance.execution_history)
    return (
        instance.status,
        instance.completed_steps,
        dict(instance.context.steps),
        history,
        instance.lease_owner,
    )


@settings(max_examples=100, deadline=None)
@given(shape=shapes, data=st.data())
def test_any_delivery_of_the_jobs_ends_as_local_runner_does(shape: Any, data: Any) -> None:
    built = build(shape)
    choices = draw_choices(built, data)
    try:
        expected = _local_run(built, choices)
        built.runs.clear()
        queued = _queued_run(built, choices, data)
    finally:
        configure()
    assert expected.status is Status.COMPLETED
    assert _outcome(queued) == _outcome(expected)
    ran = [entry.step for entry in queued.execution_history]
    assert len(ran) == len(set(ran)), "a result was recorded twice"
    assert all(count >= 1 for count in built.runs.values())
    position = {step: index for index, step in enumerate(ran)}
    for step in ran:
        for predecessor in built.workflow.graph.predecessors[step]:
            if predecessor in position:
                assert position[predecessor] < position[step], (predecessor, step)


# --- retries --------------------------------------------------------------------------------


def _retried_local_run(built: Built, initial: dict[str, Any], rounds: int) -> Instance:
    clock = Clock(NOW)
    storage = InMemoryStorage(clock=clock)
    runner = LocalRunner(max_workers=1)
    configure(storages={"default": storage}, runner=runner)
    instance_id = built.workflow.start(initial)
    for _round in range(rounds):
        instance = built.workflow.get(instance_id)
        if instance.status is not Status.WAITING:
            break
        if not _resume_first(built, instance):
            clock.now = max(clock.now, _due(instance))
            runner.work(storage=storage)
    return built.workflow.get(instance_id)


def _retried_queued_run(built: Built, initial: dict[str, Any], rounds: int, data: Any) -> Instance:
    clock = Clock(NOW)
    dispatcher = InMemoryDispatcher()
    configure(
        storages={"default": InMemoryStorage(clock=clock)},
        runner=QueuedRunner(dispatcher=dispatcher),
    )
    instance_id = built.workflow.start(initial)
    for _round in range(rounds):
        taken = dispatcher.take()
        jobs = [job for job in taken if not isinstance(job, WakeUp)]
        for wakeup in taken:
            if isinstance(wakeup, WakeUp):  # back in the queue, until it is due
                dispatcher.enqueue_wakeup(wakeup)
        for job in data.draw(st.permutations(jobs), label="delivery order"):
            dispatcher.run(job)
        if jobs:
            continue
        instance = built.workflow.get(instance_id)
        if instance.status is not Status.WAITING:
            break
        if not _resume_first(built, instance):
            clock.now = max(clock.now, _due(instance))
            dispatcher.drain()  # the wake-up job, at its time
    return built.workflow.get(instance_id)


def _resume_first(built: Built, instance: Instance) -> bool:
    """Resume the first step waiting for an event, if one is; False when only retries wait."""
    events = [step for step, why in instance.waiting_steps.items() if why.attempt is None]
    if not events:
        return False
    built.workflow.resume(instance.id, "ok", step=built.workflow.graph.sorted(events)[0])
    return True


def _due(instance: Instance) -> datetime:
    due = engine.next_due_time(instance)
    assert due is not None, "only retries wait, but no retry timer is set"
    return due


@settings(max_examples=60, deadline=None)
@given(shape=shapes, policy=policies, data=st.data())
def test_both_runners_honour_the_same_retry_policy(shape: Any, policy: Retry, data: Any) -> None:
    built = build(shape, default_retry=policy)
    graph = built.workflow.graph
    choices = draw_choices(built, data)
    fails = {
        step.step_key: data.draw(st.integers(min_value=0, max_value=4), label=step.__name__)
        for step in graph.order
        if not step.terminal
    }
    initial = {"choices": choices, "fails": fails}
    rounds = 4 * len(graph.order) * (policy.max_attempts + 1)
    try:
        expected = _retried_local_run(built, initial, rounds)
        local_runs = Counter(built.runs)
        built.runs.clear()
        queued = _retried_queued_run(built, initial, rounds, data)
    finally:
        configure()
    for runs in (local_runs, built.runs):
        assert all(count <= policy.max_attempts for count in runs.values()), runs
    assert queued.status is expected.status
    assert expected.status in (Status.COMPLETED, Status.FAILED)
    if expected.status is Status.COMPLETED:  # a failure may stop other branches at other points
        assert _retried_outcome(queued) == _retried_outcome(expected)
        assert built.runs == local_runs


def _retried_outcome(instance: Instance) -> tuple[Any, ...]:
    history = Counter(
        (entry.step, entry.event, entry.error.message if entry.error else None)
        for entry in instance.execution_history
    )
    return (instance.completed_steps, dict(instance.context.steps), history, instance.attempts)
