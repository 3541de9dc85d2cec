"""Child workflows under arbitrary step outcomes, retries and deliveries.

A parent starts one or two children of a generated series-parallel workflow
(:mod:`tests.support.properties`) under a random retry policy, each child step failing a random
number of times first; its children's event-waiting steps are resumed or the child is cancelled
as hypothesis draws, and on ``QueuedRunner`` the jobs come in any order, some twice. Whatever
happens: each child step runs at most its policy's attempts, every child ends, and the parent's
join after each child step (the step its three events lead to) runs once per child end, with the
child's status as the child step's event.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hephaestus_django import Child, Done, Event, Retry, Status, Step, Workflow
from hephaestus_django.core import engine
from hephaestus_django.core.children import ENDED
from hephaestus_django.core.instance import Instance
from hephaestus_django.runtime import (
    InMemoryDispatcher,
    InMemoryStorage,
    LocalRunner,
    QueuedRunner,
    configure,
)
from hephaestus_django.runtime.dispatch import WakeUp
from tests.support.engine import NOW
from tests.support.properties import Built, build, draw_choices, policies, shapes
from tests.timers import Clock


class Parent:
    """A generated parent: ``spawns[i]`` starts child ``i``, ``joins[i]`` follows it."""

    def __init__(self, child: type[Workflow], count: int) -> None:
        self.joined: Counter[str] = Counter()
        self.spawns = [self._spawn(child, index) for index in range(count)]
        self.joins = [self._join(f"AfterChild{index}") for index in range(count)]
        transitions: dict[type[Step], Any] = {}
        for spawn, join in zip(self.spawns, self.joins, strict=True):
            transitions[spawn] = dict.fromkeys(spawn.events, join)
        start: type[Step]
        if count == 1:
            start = self.spawns[0]
            transitions[self.joins[0]] = {"ok": Done}
        else:
            start = self._join("SplitChildren")
            closing = self._join("JoinChildren")
            transitions[start] = {"ok": list(self.spawns)}
            transitions.update({join: {"ok": closing} for join in self.joins})
            transitions[closing] = {"ok": Done}
        body = {"start": start, "transitions": transitions, "__module__": __name__}
        self.workflow: type[Workflow] = type("GeneratedParent", (Workflow,), body)

    @staticmethod
    def _spawn(child: type[Workflow], index: int) -> type[Child]:
        def child_context(self: Child, instance: Instance, context: Any) -> Any:
            return context.initial["children"][index]

        body = {"workflow": child, "child_context": child_context, "__module__": __name__}
        return type(f"SpawnChild{index}", (Child,), body)

    def _join(self, name: str) -> type[Step]:
        joined = self.joined

        def execute(self: Step, instance: Instance, config: Any, context: Any) -> Event:
            joined[name] += 1
            return Event("ok")

        body = {"events": ("ok",), "execute": execute, "__module__": __name__}
        return type(name, (Step,), body)


def _drive(parent: Parent, initial: dict[str, Any], data: Any, queued: bool, rounds: int) -> Any:
    """Run the parent to its end as the draws say; return the storage."""
    clock = Clock(NOW)
    storage = InMemoryStorage(clock=clock)
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher) if queued else LocalRunner(max_workers=1)
    configure(storages={"default": storage}, runner=runner)
    parent.workflow.start(initial)
    for _round in range(rounds):
        if queued and _deliver(dispatcher, data):
            continue
        waiting = storage.query(status="waiting")
        if not waiting:
            break
        if _resume_or_cancel(waiting, data):
            continue
        due = [when for when in map(engine.next_due_time, waiting) if when is not None]
        assert due, f"instances wait with nothing to wake them: {waiting}"
        clock.now = max(clock.now, min(due))
        if queued:
            dispatcher.drain()  # the wake-up jobs, at their time
        else:
            runner.work(storage=storage)
    return storage


def _deliver(dispatcher: InMemoryDispatcher, data: Any) -> bool:
    """Run the queued step jobs in a drawn order, some twice; False when there were none."""
    taken = dispatcher.take()
    jobs = [job for job in taken if not isinstance(job, WakeUp)]
    for wakeup in taken:
        if isinstance(wakeup, WakeUp):  # back in the queue, until it is due
            dispatcher.enqueue_wakeup(wakeup)
    for job in data.draw(st.permutations(jobs), label="delivery order"):
        dispatcher.run(job)
        if data.draw(st.booleans(), label=f"{job} twice"):
            dispatcher.run(job)
    return bool(jobs)


def _resume_or_cancel(waiting: list[Instance], data: Any) -> bool:
    """Resume a child's step that waits for an event, or cancel that child, as drawn."""
    evented = [
        (instance, step)
        for instance in waiting
        for step, why in instance.waiting_steps.items()
        if why.attempt is None and not issubclass(step, Child)
    ]
    if not evented:
        return False
    instance, step = data.draw(st.sampled_from(evented), label="resumed")
    if data.draw(st.sampled_from(["resume", "resume", "cancel"]), label="how") == "cancel":
        instance.workflow.cancel(instance.id)
    else:
        instance.workflow.resume(instance.id, "ok", step=step)
    return True


@pytest.mark.parametrize("queued", [False, True], ids=["local", "queued"])
@settings(max_examples=40, deadline=None)
@given(shape=shapes, policy=policies, count=st.integers(1, 2), data=st.data())
def test_child_steps_run_their_policys_attempts_at_most_and_each_join_fires_once(
    queued: bool, shape: Any, policy: Retry, count: int, data: Any
) -> None:
    built: Built = build(shape, default_retry=policy)
    children = []
    for index in range(count):
        fails = {
            step.step_key: data.draw(st.integers(0, 4), label=f"child {index} {step.__name__}")
            for step in built.workflow.graph.order
            if not step.terminal
        }
        children.append({"choices": draw_choices(built, data), "fails": fails})
    parent = Parent(built.workflow, count)
    rounds = 8 * count * len(built.workflow.graph.order) * (policy.max_attempts + 1)
    try:
        storage = _drive(parent, {"children": children}, data, queued, rounds)
    finally:
        configure()
    (stored,) = storage.query(workflow=parent.workflow)
    assert stored.status is Status.COMPLETED, stored
    history = Counter(entry.step for entry in stored.execution_history)
    for spawn, join in zip(parent.spawns, parent.joins, strict=True):
        child = storage.get(stored.children[spawn.step_key])
        assert child.status in ENDED
        event(f"a child {child.status.value}")
        assert child.parent == stored.id
        (entry,) = [entry for entry in stored.execution_history if entry.step is spawn]
        assert entry.event == child.status.value
        assert history[join] == 1
        assert parent.joined[join.__name__] == 1, parent.joined
    assert all(runs <= policy.max_attempts for runs in built.runs_of.values()), built.runs_of
