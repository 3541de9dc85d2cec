"""Map steps on ``QueuedRunner`` with real worker processes, for each job engine: each item is
a job of its own (at most ``in_flight`` of a map queued or running at once), the join fires once
even when the last items end together in two jobs, and a worker killed in the middle of a map
leaves the items it recorded done; the step's next job enqueues only the others.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import (
    Workers,
    all_completed,
    recorded,
)

pytestmark = pytest.mark.django_db(transaction=True)


def runs(folder: Path) -> Counter[int]:
    """How often each item ran, from its markers ``item<index>-<attempt>-<pid>``."""
    return Counter(
        int(path.name.split("-")[0].removeprefix("item"))
        for path in folder.iterdir()
        if path.name.startswith("item")
    )


def test_a_worker_runs_a_map_of_forty_items_each_once_and_the_join_once(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    started = {workers.worker("worker-1").pid, workers.worker("worker-2").pid}
    lines = [{"index": index} for index in range(40)]
    instance_id = workflows.Mapped.start({"dir": str(ran), "lines": lines})
    workers.wait_for(all_completed([instance_id]), "the map completing")
    instance = DjangoStorage().get(instance_id)
    results = instance.context.result(workflows.MarkLines)
    assert [result["index"] for result in results] == list(range(40))
    assert {result["pid"] for result in results} <= started
    assert os.getpid() not in {result["pid"] for result in results}
    assert runs(ran) == Counter(range(40))
    assert recorded(instance) == {"MarkLines": 1, "Third": 1, "Done": 1}
    assert workers.engine.failed() == 0


@pytest.mark.slow
def test_a_worker_killed_mid_map_the_items_done_are_not_run_again(
    short_lease_workers: Workers, tmp_path: Path
) -> None:
    workers = short_lease_workers
    ran = tmp_path / "ran"
    ran.mkdir()
    first = workers.worker("worker-1")
    lines = [{"index": index, "sleep": 0.2} for index in range(40)]
    instance_id = workflows.Mapped.start({"dir": str(ran), "lines": lines})
    workers.wait_for(lambda: len(runs(ran)) >= 12, "a dozen items running")

    first.send_signal(signal.SIGKILL)  # kill -9 in the middle of the map
    first.wait()
    before = runs(ran)
    second = workers.worker("worker-2")
    workers.sweep()

    workers.wait_for(all_completed([instance_id]), "the map running again")
    instance = DjangoStorage().get(instance_id)
    results = instance.context.result(workflows.MarkLines)
    assert [result["index"] for result in results] == list(range(40))
    after = runs(ran)
    assert set(after) == set(range(40))
    assert all(count <= 2 for count in after.values())  # at most the one cut off again
    assert sum(1 for count in after.values() if count == 2) <= workflows.MarkLines.in_flight
    assert {result["pid"] for result in results} <= {first.pid, second.pid}
    assert any(result["pid"] == first.pid for result in results)  # recorded before the kill
    assert recorded(instance) == {"MarkLines": 1, "Third": 1, "Done": 1}
    assert len(before) >= 12


def test_the_last_items_ending_together_in_two_jobs_join_once(
    workers: Workers, tmp_path: Path
) -> None:
    for name in ("worker-1", "worker-2", "worker-3"):
        workers.worker(name, concurrency=2)
    for run in range(3):  # one map at a time: its two items in two jobs at once
        ran = tmp_path / f"ran{run}"
        ran.mkdir()
        lines = [{"index": index, "of": 2} for index in range(2)]  # two lanes, both last
        instance_id = workflows.Twinned.start({"dir": str(ran), "lines": lines})
        workers.wait_for(all_completed([instance_id]), "the map completing", timeout=240)
        instance = DjangoStorage().get(instance_id)
        assert recorded(instance) == {"TwinLines": 1, "Third": 1, "Done": 1}
        results = instance.context.result(workflows.TwinLines)
        assert [result["index"] for result in results] == [0, 1]
    assert workers.engine.failed() == 0


def _in_flight(instance_id: object) -> int:
    """How many items of the instance's map are marked running (sampled)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM workflow_map_items WHERE instance_id = %s AND running",
            [instance_id],
        )
        (running,) = cursor.fetchone()
    return int(running)


@pytest.mark.slow
def test_a_thousand_items_run_as_jobs_at_most_in_flight_at_once(
    workers: Workers, tmp_path: Path
) -> None:
    for name in ("worker-1", "worker-2", "worker-3"):
        workers.worker(name, concurrency=4)
    instance_id = workflows.Counted.start({"count": 1000})
    samples = []

    def sampled() -> bool:
        waiting = workers.engine.step_jobs().waiting
        samples.append((waiting, _in_flight(instance_id)))
        return all_completed([instance_id])()

    workers.wait_for(sampled, "a thousand items", timeout=900)
    instance = DjangoStorage().get(instance_id)
    results = instance.context.result(workflows.CountLines)
    assert [result["index"] for result in results] == list(range(1000))
    assert recorded(instance) == {"CountLines": 1, "Third": 1, "Done": 1}
    in_flight = workflows.CountLines.in_flight
    # Each sampled on its own (two reads): the step jobs waiting in the queue (item jobs, and
    # the map's or the next step's own) and the items running.
    assert all(waiting <= in_flight + 1 for waiting, _ in samples)
    assert all(running <= in_flight for _, running in samples)
    assert any(running > 0 for _, running in samples)
    jobs = workers.engine.step_jobs()
    assert jobs.enqueued >= 1000  # a job per item, not one for the map
    assert workers.engine.failed() == 0


@pytest.mark.slow
def test_an_items_retry_waits_on_a_durable_timer_that_outlives_its_worker(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    first = workers.worker("worker-1")
    lines = [{"index": index, "flaky": index == 1} for index in range(3)]
    instance_id = workflows.Flaky.start({"dir": str(ran), "lines": lines})
    workers.wait_for(lambda: (ran / f"flaky1-1-{first.pid}").exists(), "item 1 failing")
    workers.wait_for(lambda: len(list(ran.glob("flaky*"))) >= 3, "the other items running")
    first.send_signal(signal.SIGKILL)  # kill -9 while item 1 waits for its retry
    first.wait()
    workers.worker("worker-2")

    workers.wait_for(all_completed([instance_id]), "the retry after the restart", timeout=240)
    instance = DjangoStorage().get(instance_id)
    results = instance.context.result(workflows.FlakyLines)
    assert [result["index"] for result in results] == [0, 1, 2]
    assert len(list(ran.glob("flaky1-*"))) == 2  # its failed attempt and its retry
    assert recorded(instance) == {"FlakyLines": 1, "Third": 1, "Done": 1}


@pytest.mark.slow
def test_workers_run_a_map_over_child_workflows_in_flight_bounded_and_the_join_once(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    started = {workers.worker("worker-1", concurrency=2).pid, workers.worker("worker-2").pid}
    instance_id = workflows.BoxedMap.start({"dir": str(ran), "boxes": 12})
    storage = DjangoStorage()
    peak = 0

    def sampled() -> bool:
        nonlocal peak
        boxes = storage.query(workflow=workflows.Box, limit=100)
        running = sum(1 for box in boxes if box.status.value not in ("completed", "failed"))
        peak = max(peak, running)
        return all_completed([instance_id])()

    workers.wait_for(sampled, "the map over children completing")
    assert 1 <= peak <= workflows.PackBoxes.in_flight
    instance = storage.get(instance_id)
    results = instance.context.result(workflows.PackBoxes)
    assert [result["pack_box"]["item"] for result in results] == list(range(12))
    assert {result["pack_box"]["pid"] for result in results} <= started
    boxes = storage.query(workflow=workflows.Box, limit=100)
    assert len(boxes) == 12
    assert all(box.parent == instance_id for box in boxes)
    assert Counter(path.name.split("-")[0] for path in ran.iterdir()) == Counter(
        [*(f"box{index}" for index in range(12)), "third"]  # each child once, the join once
    )
    assert recorded(instance) == {"PackBoxes": 1, "Third": 1, "Done": 1}
    assert workers.engine.failed() == 0
