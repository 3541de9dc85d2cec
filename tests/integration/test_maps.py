"""Map steps through the public API, on both storages and both runners.

``QueuedRunner`` runs here with the in-memory dispatcher, its jobs drained in this process;
real worker processes run maps in ``tests/dispatchers/test_maps_workers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from hephaestus_django import (
    Map,
    MapItem,
    MapItemError,
    Retry,
    Status,
    StepDefinitionError,
    StepOutcomeError,
    StepTimeout,
)
from hephaestus_django.core.instance import Context, Instance
from hephaestus_django.runtime import InMemoryDispatcher, InMemoryStorage, LocalRunner, configure
from hephaestus_django.runtime.queued import QueuedRunner
from tests.support import maps
from tests.support.maps import ChargeLines, Invoice, Total, lines


class Harness:
    """Start an instance and run it to where it stops, whichever runner."""

    def __init__(self, dispatcher: InMemoryDispatcher | None) -> None:
        self.dispatcher = dispatcher

    def settle(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.drain()

    def start(self, workflow: Any, context: dict[str, Any]) -> Instance:
        instance_id = workflow.start(context)
        self.settle()
        return workflow.get(instance_id)

    def retry(self, workflow: Any, instance: Instance) -> Instance:
        workflow.retry(instance.id)
        self.settle()
        return workflow.get(instance.id)


@pytest.fixture(
    params=[
        ("memory", "local"),
        ("memory", "queued"),
        pytest.param(("postgresql", "local"), marks=pytest.mark.django_db(transaction=True)),
        pytest.param(("postgresql", "queued"), marks=pytest.mark.django_db(transaction=True)),
    ],
    ids=lambda param: "-".join(param),
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    storage_kind, runner_kind = request.param
    if storage_kind == "memory":
        storage: Any = InMemoryStorage()
    else:
        from hephaestus_django.storage import DjangoStorage

        storage = DjangoStorage()
    dispatcher = InMemoryDispatcher() if runner_kind == "queued" else None
    runner: Any = (
        LocalRunner()
        if dispatcher is None
        else QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    )
    maps.reset()
    configure(storages={"default": storage}, runner=runner)
    yield Harness(dispatcher)
    runner.close()
    configure()


def joins(instance: Instance) -> int:
    return sum(1 for entry in instance.execution_history if entry.step is Total)


def test_results_form_a_list_in_item_order_and_the_join_fires_once(harness: Harness) -> None:
    instance = harness.start(Invoice, {"lines": lines(25)})
    assert instance.status is Status.COMPLETED
    assert instance.context.result(ChargeLines) == [
        {"line": index, "charged": index + 1} for index in range(25)
    ]
    assert instance.context.result(Total) == {"total": sum(range(1, 26))}
    assert joins(instance) == 1
    assert all(count == 1 for count in maps.ATTEMPTS.values())
    assert len(maps.ATTEMPTS) == 25


def test_no_more_items_than_in_flight_run_at_once(harness: Harness) -> None:
    instance = harness.start(Invoice, {"lines": lines(12, sleep=0.02)})
    assert instance.status is Status.COMPLETED
    assert 1 <= maps.peak() <= ChargeLines.in_flight


def test_an_empty_list_goes_straight_on(harness: Harness) -> None:
    instance = harness.start(Invoice, {"lines": []})
    assert instance.status is Status.COMPLETED
    assert instance.context.result(ChargeLines) == []
    assert instance.context.result(Total) == {"total": 0}


def test_an_item_is_retried_under_the_steps_policy(harness: Harness) -> None:
    items = lines(5)
    items[3]["fail"] = 2
    instance = harness.start(Invoice, {"lines": items})
    assert instance.status is Status.COMPLETED
    assert maps.ATTEMPTS["3"] == 3
    assert instance.context.result(ChargeLines)[3] == {"line": 3, "charged": 4}


def test_an_item_failing_for_good_fails_the_step_and_no_new_item_starts(
    harness: Harness,
) -> None:
    items = lines(30, sleep=0.05)
    items[0].update(fail="always", sleep=0)
    instance = harness.start(Invoice, {"lines": items})
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.step is ChargeLines
    assert instance.error.error_type == "hephaestus_django.core.errors.MapItemError"
    assert "item 0 of map step ChargeLines" in instance.error.message
    assert "after 3 attempt(s)" in instance.error.message
    assert "LineFailed" in (instance.error.traceback or "")
    assert maps.ATTEMPTS["0"] == ChargeLines.retry.max_attempts  # type: ignore[union-attr]
    assert len(maps.ATTEMPTS) < 30  # the cursor stopped
    assert joins(instance) == 0


def test_an_expected_error_fails_the_item_at_once(harness: Harness) -> None:
    items = lines(3)
    items[1]["fail"] = "declined"
    instance = harness.start(Invoice, {"lines": items})
    assert instance.status is Status.FAILED
    assert maps.ATTEMPTS["1"] == 1
    assert "Declined" in instance.error.message  # type: ignore[union-attr]


def test_retry_runs_the_failed_item_anew_and_not_the_items_done(harness: Harness) -> None:
    items = lines(6)
    items[2]["fail"] = 3  # fails its three attempts, then succeeds on the retry
    failed = harness.start(Invoice, {"lines": items})
    assert failed.status is Status.FAILED
    done_before = dict(maps.ATTEMPTS)
    instance = harness.retry(Invoice, failed)
    assert instance.status is Status.COMPLETED
    assert maps.ATTEMPTS["2"] == 4
    for index in range(6):
        if index != 2 and str(index) in done_before:
            assert maps.ATTEMPTS[str(index)] == done_before[str(index)]
    assert [line["line"] for line in instance.context.result(ChargeLines)] == list(range(6))
    assert joins(instance) == 1


def test_an_item_overrunning_the_steps_timeout_fails_with_step_timeout(
    harness: Harness,
) -> None:
    instance = harness.start(maps.SlowInvoice, {"lines": [1]})
    assert instance.status is Status.FAILED
    assert maps.ATTEMPTS["slow-1"] == 2
    assert StepTimeout.__name__ in instance.error.message  # type: ignore[union-attr]


def test_a_list_that_is_not_a_list_fails_the_step(harness: Harness) -> None:
    instance = harness.start(maps.BadInvoice, {"lines": [1]})
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert instance.error.error_type.endswith(StepOutcomeError.__name__)
    assert "not a list or a tuple" in instance.error.message


# --- definition checks ----------------------------------------------------------------------


class Line(MapItem):
    def execute(self, item: Any, context: Context) -> Any:
        return item


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ({"each": None}, "map-each"),
        ({"each": MapItem}, "map-each"),
        ({"each": Line, "in_flight": 0}, "map-in-flight"),
        ({"each": Line, "in_flight": True}, "map-in-flight"),
        ({"each": Line, "in_flight": 10_000}, "map-in-flight"),
        ({"each": Line, "events": ("done",)}, "map-events"),
        ({"each": Line, "over": None, "_no_over": True}, "map-over"),
    ],
)
def test_a_malformed_map_is_refused_when_defined(body: dict[str, Any], rule: str) -> None:
    namespace = dict(body)
    if not namespace.pop("_no_over", False):
        namespace["over"] = lambda self, context: []
    else:
        namespace.pop("over")
    with pytest.raises(StepDefinitionError) as raised:
        type("Broken", (Map,), namespace)
    assert raised.value.rule == rule
    assert "Broken" in str(raised.value)


def test_a_map_step_runs_its_items_not_the_step_and_is_never_retried_whole() -> None:
    class Fine(Map):
        each = Line
        retry = Retry(max_attempts=4)

        def over(self, context: Context) -> list[int]:
            return [1]

    assert MapItemError in Fine.expected_errors
    with pytest.raises(NotImplementedError, match="run by the runner"):
        Fine().execute(None, {}, Context())  # type: ignore[arg-type]


@pytest.mark.django_db
def test_inside_the_callers_transaction_the_items_run_in_its_thread_and_see_its_rows() -> None:
    """Within ``transaction.atomic()`` (here, the test's own), a map's items run one after
    another in the caller's thread, as a fan-out's branches do there: a thread of their own
    would not see the caller's uncommitted rows, nor its map items."""
    import threading

    from hephaestus_django.storage import DjangoStorage

    seen: list[str] = []

    class Here(MapItem):
        def execute(self, item: Any, context: Context) -> Any:
            seen.append(threading.current_thread().name)
            return item * 2

    class Doubled(Map):
        each = Here
        in_flight = 5

        def over(self, context: Context) -> Any:
            return context.initial["numbers"]

    from hephaestus_django import Done, Workflow

    class Doubling(Workflow):
        start = Doubled
        transitions = {Doubled: {"completed": Done}}

    configure(storages={"default": DjangoStorage()}, runner=LocalRunner())
    try:
        instance = Doubling.get(Doubling.start({"numbers": [1, 2, 3, 4]}))
    finally:
        configure()
    assert instance.context.result(Doubled) == [2, 4, 6, 8]
    assert seen == [threading.current_thread().name] * 4
