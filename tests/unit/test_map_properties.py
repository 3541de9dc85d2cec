"""Properties of map steps over random lists, policies, bounds and failures, on both runners.

Each item fails a random number of times before it succeeds. For any list, retry policy and
``in_flight``:

- no item runs more than the policy's ``max_attempts`` times, and one that succeeds runs
  exactly its failures plus one (no item runs again once done);
- the join (the step after the map) fires once, with every item's result in item order, when
  every item fails fewer times than ``max_attempts``; else never, and the instance fails at the
  map with ``MapItemError`` naming an item that ran ``max_attempts`` times;
- no more than ``in_flight`` items are in flight at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hephaestus_django import Status
from hephaestus_django.runtime import InMemoryDispatcher, InMemoryStorage, LocalRunner, configure
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
