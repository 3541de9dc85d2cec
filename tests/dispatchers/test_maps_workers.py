"""Map steps on ``QueuedRunner`` with real worker processes, for each job engine: the map step
is a job a worker runs, its items on that worker's threads, and a worker killed in the middle
of a map leaves the items it recorded done; the step's next job runs only the others.

Waits are for an outcome, with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

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
