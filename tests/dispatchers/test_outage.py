"""A long outage of the step workers, with real processes, on each job engine (``workers.ENGINES``).

Instances are started while no worker runs; ``hephaestus_worker`` (the sweep) runs all along, so
every instance's queue lease lapses and is taken over again and again (no job renews it while
it waits). Then workers start. What must hold, however long the outage:

- the queue holds one job per runnable step: the sweep asks the engine which steps still have a
  job waiting (``Dispatcher.pending_steps``) and gives them no second one;
- no step body runs twice (no worker died): a second job of a step that runs under a live mark
  is refused by ``mark_running``;
- every instance completes.

Run with ``-s`` to see the figures (``OUTAGE …`` lines). Waits are for an outcome, with a
generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hephaestus_django.storage import DjangoStorage
from tests.dispatchers import workflows
from tests.dispatchers.workers import Engine, Workers, all_completed, spawn_workers

pytestmark = pytest.mark.django_db(transaction=True)

LEASE = 2.0
"""Seconds: short, so ten lease periods pass in a test."""
OUTAGE_LEASES = 10
"""How many times the sweep takes each instance over before any worker starts."""
INSTANCES = 6
STEPS = 2
"""Runnable steps in the life of one ``Lingering`` instance (``Linger``, ``Second``)."""
SLACK = INSTANCES
"""The extra jobs allowed, at most about one per instance: a job a worker takes in the instant
the sweep takes its lapsed instance over (between the claim and the take-over's write) is no
longer pending, so its step is enqueued again; one of the two is refused by ``mark_running``
(the step runs elsewhere), never both run. Once the workers keep up, no lease lapses and
nothing is taken over."""


@pytest.fixture
def workers(engine: Engine, tmp_path: Path) -> Iterator[Workers]:
    yield from spawn_workers(engine, tmp_path, lease=LEASE)


def take_overs(workers: Workers, ids: list[uuid.UUID]) -> Counter[str]:
    """How often the sweep took each instance over, as its log says."""
    log = (workers.tmp_path / "sweep.log").read_text()
    found = Counter(re.findall(r"took over instance ([0-9a-f-]{36})", log))
    return Counter({str(instance_id): found[str(instance_id)] for instance_id in ids})


def runs(folder: Path) -> Counter[str]:
    """How often each step of each instance ran: the marker files, ``<step>-<n>-<pid>`` in one
    folder per instance."""
    return Counter(
        f"{instance.name}/{marker.name.split('-')[0]}"
        for instance in folder.iterdir()
        for marker in instance.iterdir()
    )


@pytest.mark.slow
def test_a_ten_lease_outage_leaves_one_job_per_step_and_runs_no_step_twice(
    workers: Workers, tmp_path: Path
) -> None:
    ran = tmp_path / "ran"
    ids: list[uuid.UUID] = []
    for number in range(INSTANCES):
        folder = ran / str(number)
        folder.mkdir(parents=True)
        ids.append(workflows.Lingering.start({"dir": str(folder)}))
    workers.sweep()
    workers.wait_for(
        lambda: min(take_overs(workers, ids).values()) >= OUTAGE_LEASES,
        f"the sweep taking every instance over {OUTAGE_LEASES} times",
        timeout=600,
    )
    during = workers.engine.step_jobs()

    if workers.engine.name == "procrastinate":
        workers.worker("worker", concurrency=4)
    else:
        for number in range(4):
            workers.worker(f"worker-{number}")
    workers.wait_for(all_completed(ids), "every instance completing", timeout=300)

    after = workers.engine.step_jobs()
    counted = runs(ran)
    twice = sum(count - 1 for count in counted.values())
    runnable = INSTANCES * STEPS
    print(
        f"\nOUTAGE {workers.engine.name}: {INSTANCES} instances, lease {LEASE} s, "
        f"{min(take_overs(workers, ids).values())}+ take-overs each; during the outage "
        f"{during.waiting} step jobs waiting for {INSTANCES} runnable steps "
        f"({during.waiting / INSTANCES:.2f} per step); in all {after.enqueued} step jobs for "
        f"{runnable} runnable steps ({after.enqueued / runnable:.2f} per step); "
        f"{twice} duplicate executions"
    )
    assert during.waiting == INSTANCES
    assert after.enqueued <= runnable + SLACK
    assert twice == 0, counted
    assert len(counted) == runnable
    storage = DjangoStorage()
    for instance_id in ids:
        history = [entry.step.__name__ for entry in storage.get(instance_id).execution_history]
        assert history == ["Linger", "Second", "Done"]
    assert workers.engine.failed() == 0
