"""Properties of map steps over random lists, policies, bounds and failures, on both runners.

Each item fails a random number of times before it succeeds. For any list, retry policy and
``in_flight``:

- no item runs more than the policy's ``max_attempts`` times, and one that succeeds runs
  exactly its failures plus one (no item runs again once done);
- the join (the step after the map) fires once, with every item's result in item order, when
  every item fails fewer times than ``max_attempts``; else never, and the instance fails at the
  map with ``MapItemError`` naming an item that ran ``max_attempts`` times;
- no more than ``in_flight`` items are in flight at once;
- on ``QueuedRunner``, the same with its item jobs delivered in any order, some twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Status
from hephaestus_django.runtime import InMemoryDispatcher, InMemoryStorage, LocalRunner, configure
from hephaestus_django.runtime.dispatch import StepJob
from hephaestus_django.runtime.queued import QueuedRunner
from tests.support import maps

failures = st.lists(st.integers(min_value=0, max_value=3), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    fails=failures,
    attempts=st.sampled_from(maps.PROPERTY_ATTEMPTS),
    concurrency=st.sampled_from(maps.PROPERTY_CONCURRENCY),
    queued=st.booleans(),
)
def test_each_item_runs_its_policys_attempts_at_most_and_the_join_fires_once(
    fails: list[int], attempts: int, concurrency: int, queued: bool
) -> None:
    maps.reset()
    workflow: Any = maps.PROPERTY_WORKFLOWS[(attempts, concurrency)]
    dispatcher = InMemoryDispatcher() if queued else None
    runner: Any = (
        QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
        if dispatcher is not None
        else LocalRunner()
    )
    configure(storages={"default": InMemoryStorage()}, runner=runner)
    try:
        lines = [
            {"id": index, "amount": index + 1, "fail": count} for index, count in enumerate(fails)
        ]
        instance_id = workflow.start({"lines": lines})
        if dispatcher is not None:
            dispatcher.drain()
        instance = workflow.get(instance_id)
    finally:
        runner.close()
        configure()

    for index, count in enumerate(fails):
        ran = maps.ATTEMPTS[str(index)]
        assert ran <= attempts
        if ran and count < attempts:
            assert ran == count + 1  # done at its first successful attempt, never run again
    assert maps.peak() <= concurrency
    joins = [entry for entry in instance.execution_history if entry.step is maps.Total]
    if all(count < attempts for count in fails):
        assert instance.status is Status.COMPLETED
        assert len(joins) == 1
        mapped = workflow.graph.start
        assert instance.context.result(mapped) == [
            {"line": index, "charged": index + 1} for index in range(len(fails))
        ]
    else:
        assert instance.status is Status.FAILED
        assert joins == []
        assert instance.error is not None
        assert instance.error.error_type.endswith("MapItemError")
        failed = [index for index, count in enumerate(fails) if count >= attempts]
        named = int(instance.error.message.split()[1])  # "item N of map step ..."
        assert named in failed
        assert maps.ATTEMPTS[str(named)] == attempts


@settings(max_examples=60, deadline=None)
@given(
    fails=failures,
    attempts=st.sampled_from(maps.PROPERTY_ATTEMPTS),
    concurrency=st.sampled_from(maps.PROPERTY_CONCURRENCY),
    order=st.randoms(use_true_random=False),
    duplicates=st.floats(min_value=0, max_value=0.5),
)
def test_item_jobs_in_any_order_and_delivered_twice_keep_the_policy_and_join_once(
    fails: list[int], attempts: int, concurrency: int, order: Any, duplicates: float
) -> None:
    """``QueuedRunner``'s item jobs delivered in a random order, some of them twice (at least
    once delivery): each item still runs its policy's attempts at most, no more than
    ``in_flight`` item jobs wait at once, the join fires once, and the results are in item
    order."""
    maps.reset()
    workflow: Any = maps.PROPERTY_WORKFLOWS[(attempts, concurrency)]
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    configure(storages={"default": InMemoryStorage()}, runner=runner)
    try:
        lines = [
            {"id": index, "amount": index + 1, "fail": count} for index, count in enumerate(fails)
        ]
        instance_id = workflow.start({"lines": lines})
        delivered: set[Any] = set()
        for _ in range(10_000):
            queued = dispatcher.take()
            if not queued:
                break
            # The item jobs the runner enqueued (a second delivery is the engine's, not ours).
            items = {
                job
                for job in queued
                if isinstance(job, StepJob) and job.item is not None and job not in delivered
            }
            assert len(items) <= concurrency
            job = queued.pop(order.randrange(len(queued)))
            if order.random() < duplicates:
                queued.append(job)  # delivered again, later
            dispatcher.enqueue_steps([j for j in queued if isinstance(j, StepJob)])
            for wakeup in (j for j in queued if not isinstance(j, StepJob)):
                dispatcher.enqueue_wakeup(wakeup)
            delivered.add(job)
            dispatcher.run(job)
        instance = workflow.get(instance_id)
    finally:
        runner.close()
        configure()

    for index, count in enumerate(fails):
        ran = maps.ATTEMPTS[str(index)]
        assert ran <= attempts
        if ran and count < attempts:
            assert ran == count + 1
    joins = [entry for entry in instance.execution_history if entry.step is maps.Total]
    if all(count < attempts for count in fails):
        assert instance.status is Status.COMPLETED
        assert len(joins) == 1
        assert instance.context.result(workflow.graph.start) == [
            {"line": index, "charged": index + 1} for index in range(len(fails))
        ]
    else:
        assert instance.status is Status.FAILED
        assert joins == []
        assert instance.error is not None
        assert instance.error.error_type.endswith("MapItemError")
