"""Properties of rewind over randomly generated valid workflows (see
``tests/support/properties.py`` for the shapes).

For any such workflow, choices and resume order, run to completion, then rewound to any step
it reached and driven again with the same events (the waiting steps resumed in the same
order):

- it ends in the same state: completed, with the same completed steps, results and history
  (less the rewind's own entry);
- exactly the forgotten steps on the taken path run again, each once more; no other step runs;
- a result computed before the rewind is refused afterwards.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Event, Status, Step
from hephaestus_django.core import engine
from hephaestus_django.core.instance import Instance
from hephaestus_django.core.rewind import REWOUND, plan, rewind
from tests.support.engine import NOW, run_waves
from tests.support.properties import Shape, build, draw_choices, shapes


def drive(instance: Instance, order: list[type[Step]], pick: Any) -> Instance:
    """Run the instance to its end, resuming the waiting steps by ``pick`` (which appends to
    ``order`` the step it chose)."""
    instance = run_waves(instance)
    for _round in range(len(instance.workflow.graph.order) + 1):
        if instance.status is not Status.WAITING:
            break
        step = pick(instance)
        order.append(step)
        instance = run_waves(engine.resume(instance, "ok", now=NOW, step=step))
    return instance


def entries(instance: Instance) -> Counter[tuple[Any, ...]]:
    return Counter(
        (entry.step, entry.event, entry.next_steps, entry.error is None)
        for entry in instance.execution_history
        if entry.event != REWOUND
    )


@settings(max_examples=150, deadline=None)
@given(shape=shapes, data=st.data())
def test_a_rewind_followed_by_the_same_events_reaches_the_same_state(
    shape: Shape, data: Any
) -> None:
    built = build(shape)
    graph = built.workflow.graph
    choices = draw_choices(built, data)
    first_order: list[type[Step]] = []

    def any_waiting(instance: Instance) -> type[Step]:
        waiting = graph.sorted(instance.waiting_steps)
        return data.draw(st.sampled_from(waiting), label="resume")

    first = drive(
        engine.start(engine.new_instance(built.workflow, {"choices": choices})),
        first_order,
        any_waiting,
    )
    assert first.status is Status.COMPLETED
    runs_before = Counter(built.runs)
    reached = graph.sorted(first.completed_steps)
    to = data.draw(st.sampled_from(reached), label="rewind to")
    late = engine.Executed(to, outcome=Event("ok"), rewinds=engine.rewinds_of(first))

    forgotten = plan(first, to).forgotten
    rewound = rewind(first, to, now=NOW)

    assert rewound.status is Status.RUNNING
    assert not engine.accepts(rewound, late)
    rank = {step: index for index, step in enumerate(first_order)}

    def same_order(instance: Instance) -> type[Step]:
        return min(instance.waiting_steps, key=lambda step: rank[step])

    again = drive(rewound, [], same_order)

    assert again.status is Status.COMPLETED
    assert again.completed_steps == first.completed_steps
    assert again.context == first.context
    assert entries(again) == entries(first)
    ran_again = built.runs - runs_before
    assert set(ran_again) == {step.__name__ for step in forgotten if not step.terminal}
    assert all(count == 1 for count in ran_again.values()), ran_again
