"""QueuedRunner against LocalRunner over randomly generated workflows and job deliveries.

A job engine delivers jobs at least once, in any order, sometimes late. For any
series-parallel workflow of :mod:`tests.unit.test_properties` and any such
delivery (jobs shuffled, some run twice, some held back and run later), the
queued run ends in the state a ``LocalRunner`` reaches: the same status, the
same completed steps and results, each step completed once in the history.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Status
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.dispatch import Job
from tests.unit.test_properties import Built, build, shapes

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
    choosers = [step for step in built.workflow.graph.order if len(step.events) > 1]
    choices = {
        step.step_key: data.draw(st.sampled_from(step.events), label=step.__name__)
        for step in choosers
    }
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
