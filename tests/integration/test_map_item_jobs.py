"""On ``QueuedRunner`` each item of a map is a job of its own (runtime/map_jobs.py).

The in-memory dispatcher's jobs are run one at a time here, so a test can look at the queue
between two: the map step's job enqueues one item job per lane, never more than ``in_flight``
wait or run at once, the instance is written at the join only, and the join fires once. Real
worker processes run item jobs in ``tests/dispatchers/test_maps_workers.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hephaestus_django import Done, Map, Retry, Status, Workflow
from hephaestus_django.core.instance import Context
from hephaestus_django.runtime import InMemoryDispatcher, InMemoryStorage, configure
from hephaestus_django.runtime.dispatch import StepJob, job_from_payload
from hephaestus_django.runtime.queued import QueuedRunner
from tests.support import maps
from tests.support.maps import ChargeLines, Invoice, Total, lines


@pytest.fixture(
    params=[
        "memory",
        pytest.param("postgresql", marks=pytest.mark.django_db(transaction=True)),
    ]
)
def queue(request: pytest.FixtureRequest) -> Iterator[tuple[InMemoryDispatcher, Any]]:
    if request.param == "memory":
        storage: Any = InMemoryStorage()
    else:
        from hephaestus_django.storage import DjangoStorage

        storage = DjangoStorage()
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    maps.reset()
    configure(storages={"default": storage}, runner=runner)
    yield dispatcher, storage
    runner.close()
    configure()


def item_jobs(dispatcher: InMemoryDispatcher) -> list[StepJob]:
    return [job for job in dispatcher.jobs if isinstance(job, StepJob) and job.item is not None]


def test_an_item_job_carries_its_index_through_its_payload() -> None:
    job = StepJob("default", uuid.uuid4(), "a.B", 2)
    item = StepJob(job.storage, job.instance_id, job.step, 2, item=7)
    assert job_from_payload(item.payload()) == item
    assert job_from_payload(job.payload()).item is None
    assert "item 7 of step a.B" in str(item)


def test_each_item_is_a_job_and_no_more_than_in_flight_wait_or_run_at_once(
    queue: tuple[InMemoryDispatcher, Any],
) -> None:
    dispatcher, storage = queue
    instance_id = Invoice.start({"lines": lines(23)})
    dispatcher.drain(limit=1)  # the map step's job: it enqueues one item job per lane
    assert sorted(job.item for job in item_jobs(dispatcher)) == list(range(ChargeLines.in_flight))
    revision = storage.get(instance_id).revision
    peak, ran = 0, 0
    while dispatcher.jobs:
        peak = max(peak, len(item_jobs(dispatcher)))
        dispatcher.drain(limit=1)
        ran += 1
    assert peak <= ChargeLines.in_flight
    instance = Invoice.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert [result["line"] for result in instance.context.result(ChargeLines)] == list(range(23))
    assert sum(1 for entry in instance.execution_history if entry.step is Total) == 1
    assert all(count == 1 for count in maps.ATTEMPTS.values())
    assert len(maps.ATTEMPTS) == 23
    # The items wrote their rows, not the instance: the join and the step after it did.
    assert instance.revision - revision <= 3
    assert ran >= 23


def test_a_second_job_of_an_item_does_nothing(queue: tuple[InMemoryDispatcher, Any]) -> None:
    dispatcher, _ = queue
    instance_id = Invoice.start({"lines": lines(3)})
    dispatcher.drain(limit=1)
    first = item_jobs(dispatcher)[0]
    dispatcher.enqueue_steps([first])  # delivered twice
    dispatcher.drain()
    instance = Invoice.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert maps.ATTEMPTS[str(first.item)] == 1


def test_the_map_step_enqueued_again_does_not_double_a_lane_whose_job_waits(
    queue: tuple[InMemoryDispatcher, Any],
) -> None:
    dispatcher, _ = queue
    instance_id = Invoice.start({"lines": lines(9)})
    head = dispatcher.jobs[0]
    dispatcher.drain(limit=1)
    waiting = item_jobs(dispatcher)
    dispatcher.enqueue_steps([head])  # as the sweep would, once the lease lapsed
    dispatcher.run(dispatcher.take()[-1])  # refused: the step runs under a live lease
    dispatcher.enqueue_steps(waiting)
    dispatcher.drain()
    assert Invoice.get(instance_id).status is Status.COMPLETED
    assert all(count == 1 for count in maps.ATTEMPTS.values())


def test_a_failed_item_fails_the_step_once_the_items_in_flight_end(
    queue: tuple[InMemoryDispatcher, Any],
) -> None:
    dispatcher, _ = queue
    items = lines(12)
    items[1]["fail"] = "declined"
    instance_id = Invoice.start({"lines": items})
    dispatcher.drain()
    instance = Invoice.get(instance_id)
    assert instance.status is Status.FAILED
    assert instance.error is not None
    assert "item 1 of map step ChargeLines" in instance.error.message
    assert "Declined" in instance.error.message
    assert len(maps.ATTEMPTS) < 12  # its lane stopped, and the others after their item


def test_retry_after_a_failed_item_runs_it_anew_as_a_job(
    queue: tuple[InMemoryDispatcher, Any],
) -> None:
    dispatcher, _ = queue
    items = lines(8)
    items[5]["fail"] = 3
    instance_id = Invoice.start({"lines": items})
    dispatcher.drain()
    assert Invoice.get(instance_id).status is Status.FAILED
    Invoice.retry(instance_id)
    dispatcher.drain()
    instance = Invoice.get(instance_id)
    assert instance.status is Status.COMPLETED
    assert maps.ATTEMPTS["5"] == 4
    assert [line["line"] for line in instance.context.result(ChargeLines)] == list(range(8))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class WaitingLines(Map):
    """Items whose retry waits an hour."""

    each = maps.ChargeLine
    in_flight = 2
    retry = Retry(max_attempts=3, backoff=timedelta(hours=1), jitter=False)

    def over(self, context: Context) -> Any:
        return context.initial["lines"]


class WaitingInvoice(Workflow):
    start = WaitingLines
    transitions = {WaitingLines: {"completed": Done}}


def test_an_items_retry_waits_on_a_durable_timer_not_a_sleep() -> None:
    clock = Clock()
    storage = InMemoryStorage(clock=clock)
    dispatcher = InMemoryDispatcher()
    runner = QueuedRunner(dispatcher=dispatcher, lease=timedelta(seconds=30))
    maps.reset()
    configure(storages={"default": storage}, runner=runner)
    try:
        items = lines(4)
        items[2]["fail"] = 1
        instance_id = WaitingInvoice.start({"lines": items})
        dispatcher.drain()  # returns: the retry is a job for an hour later, not a sleep
        assert WaitingInvoice.get(instance_id).status is Status.RUNNING
        (later,) = item_jobs(dispatcher)
        assert later.item == 2
        assert later.at is not None
        assert later.at > clock.now  # its backoff (capped by the policy's max_delay)
        assert storage.map_item(instance_id, WaitingLines.path(), 2).attempts == 1
        # Another process (a restart) picks the job up from its payload, once it is due.
        runner.close()
        fresh = InMemoryDispatcher()
        fresh.enqueue_steps([job for job in dispatcher.take() if isinstance(job, StepJob)])
        runner = QueuedRunner(dispatcher=fresh, lease=timedelta(seconds=30))
        configure(storages={"default": storage}, runner=runner)
        assert fresh.drain() == 0  # not due yet
        clock.now += timedelta(hours=1)
        fresh.drain()
        instance = WaitingInvoice.get(instance_id)
        assert instance.status is Status.COMPLETED
        assert maps.ATTEMPTS["2"] == 2
        assert [line["line"] for line in instance.context.result(WaitingLines)] == [0, 1, 2, 3]
    finally:
        runner.close()
        configure()
